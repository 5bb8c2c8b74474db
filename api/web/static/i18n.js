// The page's words in Korean and English, and the choice between them.

const STRINGS = {
  en: {
    skip: "Skip to content",
    tagline: "Votes anyone can check",
    language: "Language",
    account: "Account",
    close: "Close",
    loading: "Loading…",
    footer_note: "Every vote is an entry in a hash-chained, signed public ledger.",
    api_docs: "API docs",
    polls: "Polls",
    polls_intro: "Pick a poll to vote and watch the results move as votes come in.",
    no_polls: "There are no polls yet.",
    all_polls: "All polls",
    cta_open: "Vote and watch the results",
    cta_closed: "See the results",
    ledger_label: "Ledger position",
    log_in: "Log in",
    sign_up: "Sign up",
    log_out: "Log out",
    create_account: "Create account",
    welcome_back: "Welcome back",
    join: "Join the vote",
    email: "Email",
    password: "Password",
    name: "Name",
    part_optional: "Part (optional)",
    team_optional: "Team (optional)",
    password_hint: "At least 8 characters.",
    part_hint: "Some polls are only for one part, or not for your own team.",
    signed_in: "Logged in as {name}",
    logged_out: "You are logged out.",
    status_open: "Open",
    status_closed: "Closed",
    policy_single: "One vote per person",
    policy_changeable: "You can change your vote until it closes",
    policy_unlimited: "Vote as often as you like",
    results_always: "Results are public",
    results_after_vote: "Results open after you vote",
    results_after_close: "Results open when it closes",
    only_part: "Part {part} only",
    not_own_team: "Not for your own team",
    candidates_count: "{n} candidates",
    results: "Results",
    total_votes: "Total votes",
    votes_one: "{n} vote",
    votes_other: "{n} votes",
    ledger_position: "Ledger #{seq}",
    ledger_position_long: "Counted up to ledger entry #{seq}",
    live: "Live",
    connecting: "Connecting…",
    reconnecting: "Reconnecting…",
    offline: "Offline, retrying…",
    hidden_after_vote: "The results open once you have voted.",
    hidden_after_close: "The results open when the poll closes.",
    hidden_title: "Results are hidden for now",
    leading: "Leading",
    your_vote: "Your vote",
    vote_title: "Your vote",
    your_choice: "Choose a candidate",
    vote: "Vote",
    change_vote: "Change my vote",
    vote_again: "Vote again",
    voting: "Recording your vote…",
    vote_recorded: "Your vote is in the ledger at entry #{seq}.",
    you_chose: "You voted for {name}.",
    you_voted_times: "You have voted {n} times in this poll.",
    log_in_to_vote: "Log in or sign up to vote.",
    own_team: "Your team",
    not_eligible_part: "Only members of part {part} vote in this poll.",
    poll_closed_note: "This poll is closed.",
    poll_not_open_note: "This poll is not open yet.",
    pick_first: "Choose a candidate first.",
    projector: "Projector view",
    my_ballots: "Your ballots",
    no_ballots: "You have not voted yet.",
    not_voted: "Not voted yet",
    receipt: "Your receipt",
    receipt_intro: "It proves that your vote is entry #{seq} of the ledger, signed by the ledger's key. Keep it: anyone can check it without trusting this server.",
    receipt_missing: "This server gives no receipts yet.",
    receipt_entry: "Entry",
    receipt_tree: "Tree size",
    receipt_leaf: "Leaf hash",
    receipt_key: "Verifier key",
    receipt_origin: "Ledger",
    verify: "Verify in this browser",
    verifying: "Verifying…",
    download: "Download receipt",
    check_body: "The receipt holds a vote for {candidate} in {poll}",
    check_leaf: "The vote's contents hash to the receipt's leaf",
    check_inclusion: "The inclusion proof leads to the root of a tree of {size} entries",
    check_checkpoint: "The checkpoint names that tree",
    check_key: "The verifier key is well formed and names its own id",
    check_signature: "The checkpoint is signed with the ledger's key",
    verified: "Verified: your vote is in the signed ledger.",
    not_verified: "This receipt does not verify.",
    no_ed25519: "This browser cannot check Ed25519 signatures. The hashes and the proof were checked; download the receipt and check the signature with “vote-ledger verify receipt”.",
    no_webcrypto: "The browser offers Web Crypto only on HTTPS or localhost. Download the receipt and check it with “vote-ledger verify receipt”.",
    no_key: "The ledger's verifier key could not be read.",
    screen_vote_at: "Vote at {url}",
    screen_hidden_after_vote: "Results appear here when the poll closes.",
    screen_hidden_after_close: "Results appear here when the poll closes.",
    not_found: "There is no such poll.",
    back: "Back to all polls",
    err_already_voted: "You have already voted in this poll.",
    err_not_eligible: "You cannot vote in this poll.",
    err_own_team: "You cannot vote for your own team.",
    err_poll_closed: "This poll is closed.",
    err_poll_not_open: "This poll is not open yet.",
    err_invalid_credentials: "Wrong email or password.",
    err_email_taken: "This email is already registered.",
    err_too_many_attempts: "Too many attempts. Wait a moment and try again.",
    err_too_many_signups: "Too many signups from here. Wait a moment and try again.",
    err_session: "Your session has ended. Please log in again.",
    err_network: "The server cannot be reached. Check your connection and try again.",
    err_busy: "The server is busy. Try again in a moment.",
    err_fields: "Check the highlighted fields.",
  },
  ko: {
    skip: "본문으로 건너뛰기",
    tagline: "누구나 검증할 수 있는 투표",
    language: "언어",
    account: "계정",
    close: "닫기",
    loading: "불러오는 중…",
    footer_note: "모든 표는 해시로 연결되고 서명된 공개 원장에 기록돼요.",
    api_docs: "API 문서",
    polls: "투표",
    polls_intro: "투표를 골라 참여하고, 표가 들어올 때마다 결과가 바뀌는 걸 지켜보세요.",
    no_polls: "아직 열린 투표가 없어요.",
    all_polls: "전체 투표",
    cta_open: "투표하고 결과 보기",
    cta_closed: "결과 보기",
    ledger_label: "원장 위치",
    log_in: "로그인",
    sign_up: "회원가입",
    log_out: "로그아웃",
    create_account: "가입하기",
    welcome_back: "다시 오신 걸 환영해요",
    join: "투표에 참여하기",
    email: "이메일",
    password: "비밀번호",
    name: "이름",
    part_optional: "파트 (선택)",
    team_optional: "팀 (선택)",
    password_hint: "8자 이상 입력해 주세요.",
    part_hint: "파트별 투표나, 자기 팀에는 투표할 수 없는 투표가 있어요.",
    signed_in: "{name} 님으로 로그인했어요",
    logged_out: "로그아웃했어요.",
    status_open: "진행 중",
    status_closed: "마감",
    policy_single: "1인 1표",
    policy_changeable: "마감 전까지 표를 바꿀 수 있어요",
    policy_unlimited: "여러 번 투표할 수 있어요",
    results_always: "결과 공개",
    results_after_vote: "투표 후 결과 공개",
    results_after_close: "마감 후 결과 공개",
    only_part: "{part} 파트만",
    not_own_team: "자기 팀 제외",
    candidates_count: "후보 {n}명",
    results: "결과",
    total_votes: "총 투표수",
    votes_one: "{n}표",
    votes_other: "{n}표",
    ledger_position: "원장 #{seq}",
    ledger_position_long: "원장 #{seq}까지 집계",
    live: "실시간",
    connecting: "연결 중…",
    reconnecting: "다시 연결하는 중…",
    offline: "연결이 끊겼어요. 다시 시도하는 중…",
    hidden_after_vote: "투표하면 결과를 볼 수 있어요.",
    hidden_after_close: "투표가 마감되면 결과가 공개돼요.",
    hidden_title: "아직 결과를 볼 수 없어요",
    leading: "1위",
    your_vote: "내 선택",
    vote_title: "투표하기",
    your_choice: "후보를 고르세요",
    vote: "투표하기",
    change_vote: "표 바꾸기",
    vote_again: "한 번 더 투표하기",
    voting: "투표를 기록하는 중…",
    vote_recorded: "투표가 원장 #{seq}에 기록됐어요.",
    you_chose: "{name} 후보에게 투표했어요.",
    you_voted_times: "이 투표에 {n}번 참여했어요.",
    log_in_to_vote: "투표하려면 로그인하거나 가입하세요.",
    own_team: "내 팀",
    not_eligible_part: "{part} 파트 멤버만 참여할 수 있는 투표예요.",
    poll_closed_note: "마감된 투표예요.",
    poll_not_open_note: "아직 시작하지 않은 투표예요.",
    pick_first: "먼저 후보를 골라 주세요.",
    projector: "프로젝터 화면",
    my_ballots: "내 투표",
    no_ballots: "아직 참여한 투표가 없어요.",
    not_voted: "아직 투표 전",
    receipt: "투표 영수증",
    receipt_intro: "내 표가 원장의 #{seq} 항목이며 원장의 키로 서명됐다는 증명이에요. 보관해 두면 이 서버를 믿지 않고도 누구나 확인할 수 있어요.",
    receipt_missing: "이 서버는 아직 영수증을 발급하지 않아요.",
    receipt_entry: "항목",
    receipt_tree: "트리 크기",
    receipt_leaf: "리프 해시",
    receipt_key: "검증 키",
    receipt_origin: "원장",
    verify: "브라우저에서 검증하기",
    verifying: "검증하는 중…",
    download: "영수증 내려받기",
    check_body: "영수증에 담긴 표: {poll}, {candidate}",
    check_leaf: "표의 내용이 영수증의 리프 해시와 일치해요",
    check_inclusion: "포함 증명이 항목 {size}개짜리 트리의 루트로 이어져요",
    check_checkpoint: "체크포인트가 그 트리를 가리켜요",
    check_key: "검증 키의 형식과 키 ID가 맞아요",
    check_signature: "체크포인트가 원장의 키로 서명됐어요",
    verified: "검증 완료: 내 표가 서명된 원장에 들어 있어요.",
    not_verified: "이 영수증은 검증되지 않아요.",
    no_ed25519: "이 브라우저는 Ed25519 서명을 확인할 수 없어요. 해시와 증명은 확인했어요. 영수증을 내려받아 “vote-ledger verify receipt”로 서명을 확인하세요.",
    no_webcrypto: "브라우저는 HTTPS나 localhost에서만 Web Crypto를 제공해요. 영수증을 내려받아 “vote-ledger verify receipt”로 확인하세요.",
    no_key: "원장의 검증 키를 읽지 못했어요.",
    screen_vote_at: "투표하기: {url}",
    screen_hidden_after_vote: "투표가 마감되면 여기에 결과가 나와요.",
    screen_hidden_after_close: "투표가 마감되면 여기에 결과가 나와요.",
    not_found: "그런 투표는 없어요.",
    back: "전체 투표로",
    err_already_voted: "이미 이 투표에 참여했어요.",
    err_not_eligible: "이 투표에는 참여할 수 없어요.",
    err_own_team: "자기 팀에는 투표할 수 없어요.",
    err_poll_closed: "마감된 투표예요.",
    err_poll_not_open: "아직 시작하지 않은 투표예요.",
    err_invalid_credentials: "이메일 또는 비밀번호가 맞지 않아요.",
    err_email_taken: "이미 가입된 이메일이에요.",
    err_too_many_attempts: "시도가 너무 많아요. 잠시 후 다시 시도해 주세요.",
    err_too_many_signups: "이곳에서 가입 시도가 너무 많아요. 잠시 후 다시 시도해 주세요.",
    err_session: "로그인이 만료됐어요. 다시 로그인해 주세요.",
    err_network: "서버에 연결할 수 없어요. 연결을 확인하고 다시 시도해 주세요.",
    err_busy: "서버가 바빠요. 잠시 후 다시 시도해 주세요.",
    err_fields: "표시된 항목을 확인해 주세요.",
  },
};

export const LANGUAGES = Object.keys(STRINGS);
const STORED = "vote-ledger.lang";
let current = "en";
const listeners = new Set();

function fromNavigator() {
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const primary = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(primary)) return primary;
  }
  return null;
}

/** The language chosen before, else the browser's, else the one the server picked. */
export function initLanguage() {
  let stored = null;
  try { stored = localStorage.getItem(STORED); } catch { /* storage off: no memory of the choice */ }
  const served = document.documentElement.lang;
  current = LANGUAGES.includes(stored) ? stored : fromNavigator() || (LANGUAGES.includes(served) ? served : "en");
  document.documentElement.lang = current;
  return current;
}

export function lang() {
  return current;
}

export function setLanguage(next) {
  if (!LANGUAGES.includes(next) || next === current) return;
  current = next;
  document.documentElement.lang = next;
  try { localStorage.setItem(STORED, next); } catch { /* not remembered */ }
  for (const listener of listeners) listener(next);
}

export function onLanguage(listener) {
  listeners.add(listener);
}

/** The text of ``key`` with ``{name}`` placeholders filled in. */
export function t(key, values = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
}

export function formatNumber(n) {
  return new Intl.NumberFormat(current).format(n);
}

export function formatShare(share) {
  return new Intl.NumberFormat(current, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 })
    .format(share);
}

export function votes(n) {
  const rule = new Intl.PluralRules(current).select(n);
  return t(rule === "one" ? "votes_one" : "votes_other", { n: formatNumber(n) });
}

/** A refusal in the reader's words: the message for its code, else the server's own. */
export function explain(error) {
  if (!error) return "";
  if (error.code === "not_eligible" && /own team/.test(error.message || "")) return t("err_own_team");
  if (["invalid_token", "token_expired", "token_revoked", "missing_token"].includes(error.code)) return t("err_session");
  if (error.code === "store_unavailable" || error.code === "busy") return t("err_busy");
  if (error.code === "network") return t("err_network");
  const key = `err_${error.code}`;
  if (current === "en" && error.message) return error.message.charAt(0).toUpperCase() + error.message.slice(1);
  return key in STRINGS[current] ? t(key) : error.message;
}

/** Fill in every ``data-i18n`` text and ``data-i18n-aria-label`` label under ``root``. */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
}
