// The page: the polls, one poll's live results and its vote, the account, and the receipt.

import { api, clearSession, currentSession, idempotencyKey, loadSession, saveSession } from "./api.js";
import { renderBars } from "./bars.js";
import { explain, formatNumber, initLanguage, lang, onLanguage, setLanguage, t, translate, votes } from "./i18n.js";
import { icon } from "./icons.js";
import { watchResults } from "./live.js";
import { receiptCard } from "./receipt.js";

const RECEIPTS = "vote-ledger.receipts";

const state = {
  polls: [],
  me: null,
  route: { name: "home" },
  stream: null,
  streamFor: null,
  results: null,
  hidden: null,
  live: "connecting",
  notice: null, // {kind, text} under the vote form
  receipts: null, // {token, found: Promise<receipt[]>}: the server's, asked once per session
};

// --- small DOM helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

const $ = (selector, root = document) => root.querySelector(selector);

function toast(text, kind = "info") {
  const region = $("#toasts");
  const item = el("div", { class: `toast toast-${kind}`, text });
  region.append(item);
  setTimeout(() => item.classList.add("leaving"), 3600);
  setTimeout(() => item.remove(), 4000);
}

// --- data --------------------------------------------------------------------------------------

function pollById(id) {
  return state.polls.find((p) => p.id === id) || null;
}

function ballotOf(pollId) {
  return state.me ? state.me.polls.find((b) => b.pollId === pollId) || null : null;
}

async function loadPolls() {
  const answer = await api("/api/v1/polls");
  state.polls = Array.isArray(answer) ? answer : answer.polls;
}

async function loadMe() {
  if (!currentSession()) {
    state.me = null;
    return;
  }
  try {
    state.me = await api("/api/v1/me", { auth: true });
  } catch (error) {
    if (error.status === 401) {
      clearSession();
      state.me = null;
      toast(t("err_session"), "error");
    } else {
      throw error;
    }
  }
}

function savedReceipts() {
  try {
    return JSON.parse(localStorage.getItem(RECEIPTS) || "{}");
  } catch {
    return {};
  }
}

function keepReceipt(userId, vote, receipt) {
  const all = savedReceipts();
  all[`${userId}/${vote.pollId}`] = { vote, receipt };
  try { localStorage.setItem(RECEIPTS, JSON.stringify(all)); } catch { /* shown, not kept */ }
}

function keptReceipt(pollId) {
  const session = currentSession();
  return session ? savedReceipts()[`${session.user.id}/${pollId}`] || null : null;
}

// --- routes ------------------------------------------------------------------------------------

function parseRoute(path) {
  const found = /^\/polls\/([^/]+)\/?$/.exec(path);
  return found ? { name: "poll", pollId: decodeURIComponent(found[1]) } : { name: "home" };
}

function navigate(path) {
  if (path !== location.pathname) history.pushState({}, "", path);
  state.route = parseRoute(location.pathname);
  render({ focus: true });
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-route]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(new URL(link.href).pathname);
});

window.addEventListener("popstate", () => {
  state.route = parseRoute(location.pathname);
  render({ focus: true });
});

// --- the header: language and account ----------------------------------------------------------

function renderLanguageSwitch() {
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang()));
  }
}

function renderAccount() {
  const box = $("#account");
  const session = currentSession();
  if (session) {
    const name = session.user.name || session.user.email || "";
    box.replaceChildren(
      el("span", { class: "who" },
        el("span", { class: "avatar", "aria-hidden": "true", text: name.slice(0, 1).toUpperCase() }),
        el("span", { class: "who-name", text: name })),
      el("button", { type: "button", class: "btn btn-ghost btn-small", onclick: logOut, text: t("log_out") }),
    );
  } else {
    box.replaceChildren(
      el("button", { type: "button", class: "btn btn-ghost btn-small", onclick: () => openAuth("login"), text: t("log_in") }),
      el("button", { type: "button", class: "btn btn-primary btn-small header-signup", onclick: () => openAuth("signup"), text: t("sign_up") }),
    );
  }
}

// --- the account dialog ------------------------------------------------------------------------

function setAuthMode(mode) {
  const dialog = $("#auth-dialog");
  dialog.dataset.mode = mode;
  $("#auth-title").textContent = mode === "login" ? t("welcome_back") : t("join");
  for (const button of dialog.querySelectorAll("[data-auth-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.authMode === mode));
  }
  $("#login-form").hidden = mode !== "login";
  $("#signup-form").hidden = mode !== "signup";
}

function openAuth(mode) {
  const dialog = $("#auth-dialog");
  setAuthMode(mode);
  for (const form of dialog.querySelectorAll("form.stack")) clearFormError(form);
  if (!dialog.open) dialog.showModal();
  const first = $(mode === "login" ? "#login-email" : "#signup-name");
  first.focus();
}

function clearFormError(form) {
  const box = $(".form-error", form);
  box.hidden = true;
  box.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showFormError(form, error) {
  const box = $(".form-error", form);
  let first = null;
  for (const name of Object.keys(error.fields || {})) {
    const input = form.elements.namedItem(name);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
  }
  const fields = Object.entries(error.fields || {}).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : v}`);
  box.textContent = error.code === "invalid_fields" || error.code === "validation_failed"
    ? `${t("err_fields")} ${fields.join("; ")}` : explain(error);
  box.hidden = false;
  (first || box).focus?.();
}

async function afterLogin(login) {
  saveSession(login);
  $("#auth-dialog").close();
  toast(t("signed_in", { name: login.user.name || login.user.email }), "success");
  await loadMe();
  renderAccount();
  render({ restream: true });
}

async function submitLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormError(form);
  const button = $("button[type=submit]", form);
  button.disabled = true;
  try {
    const login = await api("/api/v1/auth/login", {
      method: "POST", body: { email: form.email.value.trim(), password: form.password.value },
    });
    form.reset();
    await afterLogin(login);
  } catch (error) {
    showFormError(form, error);
  } finally {
    button.disabled = false;
  }
}

async function submitSignup(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormError(form);
  const body = { name: form.name.value.trim(), email: form.email.value.trim(), password: form.password.value };
  if (form.part.value.trim()) body.part = form.part.value.trim();
  if (form.team.value.trim()) body.team = form.team.value.trim();
  const button = $("button[type=submit]", form);
  button.disabled = true;
  try {
    await api("/api/v1/users", { method: "POST", body });
    const login = await api("/api/v1/auth/login", { method: "POST", body: { email: body.email, password: body.password } });
    form.reset();
    await afterLogin(login);
  } catch (error) {
    showFormError(form, error);
  } finally {
    button.disabled = false;
  }
}

async function logOut() {
  try {
    await api("/api/v1/auth/logout", { method: "POST", auth: true });
  } catch { /* the token is forgotten here either way */ }
  clearSession();
  state.me = null;
  renderAccount();
  toast(t("logged_out"));
  render({ restream: true });
}

// --- the home view: every poll -----------------------------------------------------------------

function chips(poll) {
  const items = [t(`policy_${poll.policy}`), t(`results_${poll.results}`)];
  if (poll.eligibility && poll.eligibility.samePart) items.push(t("only_part", { part: poll.eligibility.samePart }));
  if (poll.eligibility && poll.eligibility.notOwnTeam) items.push(t("not_own_team"));
  return el("ul", { class: "chips" }, items.map((text) => el("li", { text })));
}

function statusBadge(status) {
  return el("span", { class: `badge badge-${status}`, dataset: { status } },
    el("span", { class: "badge-dot", "aria-hidden": "true" }), t(`status_${status}`));
}

function candidateName(poll, id) {
  const found = poll && poll.candidates.find((c) => c.id === id);
  return found ? found.name : `#${id}`;
}

function renderHome(view) {
  document.title = `${t("polls")} · vote-ledger`;
  const cards = state.polls.map((poll) => {
    const ballot = ballotOf(poll.id);
    const mine = ballot && ballot.voted
      ? el("span", { class: "mine-note" }, el("span", { "aria-hidden": "true", text: "✓ " }),
        t("you_chose", { name: candidateName(poll, ballot.candidateId) }))
      : null;
    return el("li", { class: "card poll-card" },
      el("div", { class: "poll-card-top" }, statusBadge(poll.status),
        el("span", { class: "muted small", text: t("candidates_count", { n: poll.candidates.length }) })),
      el("h2", { class: "poll-card-title" },
        el("a", { href: `/polls/${encodeURIComponent(poll.id)}`, "data-route": true, class: "stretched", text: poll.title })),
      chips(poll),
      el("div", { class: "poll-card-foot" },
        mine || el("span", { class: "cta", text: t(poll.status === "open" ? "cta_open" : "cta_closed") }),
        el("span", { class: "arrow", "aria-hidden": "true", text: "→" })));
  });
  const hero = el("section", { class: "hero" },
    el("h1", { tabindex: "-1", text: t("polls") }),
    el("p", { class: "lead", text: t("polls_intro") }));
  const list = state.polls.length
    ? el("ul", { class: "poll-grid", "aria-label": t("polls") }, cards)
    : el("p", { class: "empty", text: t("no_polls") });
  view.replaceChildren(hero, list);
  if (state.me) view.append(ballotsSection());
}

function ballotsSection() {
  const rows = state.me.polls.map((ballot) => {
    const poll = pollById(ballot.pollId);
    const title = poll ? poll.title : ballot.pollId;
    const what = ballot.voted
      ? (poll && poll.policy === "unlimited" ? `${candidateName(poll, ballot.candidateId)} · ${votes(ballot.votes)}`
        : candidateName(poll, ballot.candidateId))
      : t("not_voted");
    return el("li", { class: `ballot ${ballot.voted ? "is-voted" : ""}` },
      el("a", { href: `/polls/${encodeURIComponent(ballot.pollId)}`, "data-route": true, text: title }),
      el("span", { class: "ballot-choice", text: what }));
  });
  return el("section", { class: "card ballots", "aria-labelledby": "ballots-title" },
    el("h2", { id: "ballots-title", class: "card-title", text: t("my_ballots") }),
    state.me.polls.some((b) => b.voted) ? null : el("p", { class: "muted", text: t("no_ballots") }),
    el("ul", { class: "ballot-list" }, rows));
}

// --- the poll view: live results, the vote, the receipt ----------------------------------------

function renderPoll(view, poll) {
  document.title = `${poll.title} · vote-ledger`;
  const head = el("header", { class: "poll-head" },
    el("nav", { class: "crumbs", "aria-label": t("all_polls") },
      el("a", { href: "/", "data-route": true }, el("span", { "aria-hidden": "true", text: "← " }), t("back"))),
    el("div", { class: "poll-head-row" },
      el("div", {},
        el("div", { class: "poll-head-badges", id: "poll-status" }, statusBadge(poll.status)),
        el("h1", { tabindex: "-1", text: poll.title }),
        chips(poll)),
      el("a", { class: "btn btn-secondary projector-link", href: `/polls/${encodeURIComponent(poll.id)}/screen`,
        target: "_blank", rel: "noopener" }, icon("screen"), t("projector"))));
  const results = el("section", { class: "card results-card", "aria-labelledby": "results-title" },
    el("div", { class: "card-head" },
      el("h2", { id: "results-title", class: "card-title", text: t("results") }),
      el("span", { class: "live", id: "live", dataset: { state: state.live } },
        el("span", { class: "live-dot", "aria-hidden": "true" }), el("span", { class: "live-text" }))),
    el("div", { class: "totals", id: "totals" },
      el("div", { class: "stat" },
        el("span", { class: "stat-label", text: t("total_votes") }),
        el("strong", { class: "stat-value", id: "total", text: "–" })),
      el("div", { class: "stat stat-end" },
        el("span", { class: "stat-label", text: t("ledger_label") }),
        el("span", { class: "stat-seq", id: "seq", text: "–" }))),
    el("ol", { class: "bars", id: "bars", "aria-label": t("results") }),
    el("div", { class: "hidden-note", id: "hidden-note", hidden: true },
      el("span", { class: "hidden-icon" }, icon("lock")),
      el("div", {}, el("strong", { text: t("hidden_title") }), el("p", { id: "hidden-text" }),
        el("p", { class: "asof", id: "asof" }))));
  const side = el("div", { class: "side" },
    el("section", { class: "card vote-card", id: "vote-card", "aria-labelledby": "vote-title" }),
    el("div", { id: "receipt-slot" }));
  view.replaceChildren(head, el("div", { class: "poll-layout" }, results, side));
  renderLive();
  if (state.results && state.results.pollId === poll.id) showResults(state.results);
  else if (state.hidden && state.hidden.pollId === poll.id) showHidden(state.hidden);
  renderVote(poll);
  renderReceipt(poll);
}

function renderLive() {
  const box = $("#live");
  if (!box) return;
  box.dataset.state = state.live;
  $(".live-text", box).textContent = t(state.live);
}

function showResults(results) {
  const poll = pollById(results.pollId);
  const list = $("#bars");
  if (!poll || !list || state.route.pollId !== results.pollId) return;
  $("#hidden-note").hidden = true;
  $("#totals").hidden = false;
  list.hidden = false;
  const ballot = ballotOf(poll.id);
  renderBars(list, results, {
    details: new Map(poll.candidates.map((c) => [c.id, c])),
    mine: ballot && ballot.voted ? ballot.candidateId : null,
  });
  $("#total").textContent = formatNumber(results.totalVotes);
  $("#seq").textContent = `#${results.asOf}`;
  $("#seq").title = t("ledger_position_long", { seq: results.asOf });
}

function showHidden(notice) {
  const poll = pollById(notice.pollId);
  if (!poll || !$("#bars") || state.route.pollId !== notice.pollId) return;
  $("#bars").hidden = true;
  $("#bars").replaceChildren();
  $("#hidden-note").hidden = false;
  $("#hidden-text").textContent = t(poll.results === "after_vote" ? "hidden_after_vote" : "hidden_after_close");
  $("#totals").hidden = true;
  $("#asof").textContent = t("ledger_position", { seq: notice.asOf });
}

function statusChanged(pollId, status) {
  const poll = pollById(pollId);
  if (!poll || !status || poll.status === status) return;
  poll.status = status;
  if (state.route.pollId === pollId) {
    $("#poll-status")?.replaceChildren(statusBadge(status));
    renderVote(poll);
  }
}

function startStream(pollId) {
  if (state.stream) state.stream.close();
  state.results = null;
  state.hidden = null;
  const session = currentSession();
  state.streamFor = `${pollId}/${session ? session.token : ""}`;
  state.stream = watchResults(pollId, {
    token: session ? session.token : null,
    onState(live) {
      state.live = live;
      renderLive();
    },
    onResults(results) {
      state.results = results;
      state.hidden = null;
      statusChanged(results.pollId, results.status);
      showResults(results);
    },
    onHidden(notice) {
      state.hidden = notice;
      state.results = null;
      statusChanged(notice.pollId, notice.status);
      showHidden(notice);
    },
  });
}

function stopStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
  state.streamFor = null;
}

function eligibility(poll) {
  const user = state.me ? state.me.user : null;
  if (!user) return { ok: false, reason: "login" };
  if (poll.status !== "open") return { ok: false, reason: "closed" };
  if (poll.eligibility && poll.eligibility.samePart && user.part !== poll.eligibility.samePart) {
    return { ok: false, reason: "part" };
  }
  return { ok: true };
}

function renderVote(poll) {
  const card = $("#vote-card");
  if (!card) return;
  const ballot = ballotOf(poll.id);
  const voted = Boolean(ballot && ballot.voted);
  const status = eligibility(poll);
  const parts = [el("h2", { id: "vote-title", class: "card-title", text: t("vote_title") })];
  if (voted) {
    parts.push(el("p", { class: "voted-note" }, el("span", { class: "check", "aria-hidden": "true", text: "✓" }),
      poll.policy === "unlimited" ? t("you_voted_times", { n: formatNumber(ballot.votes) })
        : t("you_chose", { name: candidateName(poll, ballot.candidateId) })));
  }
  if (state.notice) parts.push(el("p", { class: `banner banner-${state.notice.kind}`, role: "status", text: state.notice.text }));
  if (status.reason === "login") {
    parts.push(el("p", { class: "muted", text: t("log_in_to_vote") }),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "btn btn-primary", onclick: () => openAuth("login"), text: t("log_in") }),
        el("button", { type: "button", class: "btn btn-secondary", onclick: () => openAuth("signup"), text: t("sign_up") })));
  } else if (status.reason === "closed") {
    parts.push(el("p", { class: "banner banner-neutral", text: t("poll_closed_note") }));
  } else if (status.reason === "part") {
    parts.push(el("p", { class: "banner banner-neutral", text: t("not_eligible_part", { part: poll.eligibility.samePart }) }));
  } else if (!(voted && poll.policy === "single")) {
    parts.push(voteForm(poll, ballot));
  }
  card.replaceChildren(...parts);
}

function voteForm(poll, ballot) {
  const user = state.me.user;
  const choices = poll.candidates.map((c) => {
    const ownTeam = Boolean(poll.eligibility && poll.eligibility.notOwnTeam && user.team && c.team === user.team);
    const meta = [c.part, c.team].filter((v) => v && v !== c.name).join(" · ");
    return el("label", { class: `choice ${ownTeam ? "is-disabled" : ""}` },
      el("input", {
        type: "radio", name: "candidate", value: String(c.id), disabled: ownTeam,
        checked: Boolean(ballot && ballot.voted && ballot.candidateId === c.id && poll.policy !== "unlimited"),
      }),
      el("span", { class: "choice-text" },
        el("span", { class: "choice-name", text: c.name }),
        meta || ownTeam ? el("span", { class: "choice-meta", text: ownTeam ? [meta, t("own_team")].filter(Boolean).join(" · ") : meta }) : null));
  });
  const voted = Boolean(ballot && ballot.voted);
  const label = !voted ? t("vote") : poll.policy === "unlimited" ? t("vote_again") : t("change_vote");
  const error = el("div", { class: "form-error", role: "alert", tabindex: "-1", hidden: true });
  const submit = el("button", { type: "submit", class: "btn btn-primary btn-block", text: label });
  const form = el("form", { class: "vote-form", novalidate: true },
    el("fieldset", {}, el("legend", { text: t("your_choice") }), el("div", { class: "choices" }, choices)),
    error, submit);
  form.addEventListener("submit", (event) => castVote(event, poll, form, error, submit, label));
  return form;
}

async function castVote(event, poll, form, error, submit, label) {
  event.preventDefault();
  error.hidden = true;
  const chosen = form.querySelector("input[name=candidate]:checked");
  if (!chosen) {
    error.textContent = t("pick_first");
    error.hidden = false;
    form.querySelector("input[name=candidate]:not(:disabled)")?.focus();
    return;
  }
  const candidateId = Number(chosen.value);
  submit.disabled = true;
  submit.textContent = t("voting");
  try {
    const answer = await api(`/api/v1/polls/${encodeURIComponent(poll.id)}/votes`, {
      method: "POST", auth: true, body: { candidateId }, headers: { "Idempotency-Key": idempotencyKey() },
    });
    const vote = { pollId: poll.id, candidateId };
    if (answer.receipt) keepReceipt(currentSession().user.id, vote, answer.receipt);
    state.receipts = null; // the server's list has one more
    state.notice = { kind: "ok", text: t("vote_recorded", { seq: answer.seq }) };
    await loadMe();
    renderVote(poll);
    renderReceipt(poll, answer.receipt ? { vote, receipt: answer.receipt } : null);
    if (state.results) showResults(state.results);
    $("#vote-card .banner")?.focus?.();
  } catch (failure) {
    submit.disabled = false;
    submit.textContent = label;
    error.textContent = explain(failure);
    error.dataset.code = failure.code;
    error.hidden = false;
    error.focus();
    if (failure.status === 401) {
      clearSession();
      state.me = null;
      renderAccount();
    } else if (failure.code === "already_voted" || failure.code === "poll_closed") {
      await loadMe().catch(() => {});
    }
  }
}

/** The caller's receipts from the server (``GET /api/v1/me/receipts``), asked once per session;
 * none where the server gives no receipts. */
async function serverReceipts() {
  const session = currentSession();
  if (!session) return [];
  if (!state.receipts || state.receipts.token !== session.token) {
    state.receipts = {
      token: session.token,
      found: api("/api/v1/me/receipts", { auth: true }).then((a) => a.receipts || []).catch(() => []),
    };
  }
  return state.receipts.found;
}

function voteOf(receipt) {
  try {
    const event = JSON.parse(receipt.body);
    return event.type === "VoteCast" ? { pollId: event.data.poll_id, candidateId: event.data.candidate_id } : null;
  } catch {
    return null;
  }
}

function named(vote) {
  const poll = pollById(vote.pollId);
  return { ...vote, pollTitle: poll ? poll.title : vote.pollId, candidateName: candidateName(poll, vote.candidateId) };
}

function renderReceipt(poll, fresh = null) {
  const slot = $("#receipt-slot");
  if (!slot) return;
  const kept = fresh || keptReceipt(poll.id);
  if (kept) slot.replaceChildren(receiptCard(kept.receipt, named(kept.vote)));
  else slot.replaceChildren();
  const ballot = ballotOf(poll.id);
  if (kept || !ballot || !ballot.voted) return;
  // voted elsewhere (another browser, the API): the server keeps every receipt
  serverReceipts().then((receipts) => {
    const mine = receipts.map((r) => ({ receipt: r, vote: voteOf(r) }))
      .filter((r) => r.vote && r.vote.pollId === poll.id)
      .sort((a, b) => b.receipt.seq - a.receipt.seq)[0];
    if (mine && state.route.pollId === poll.id && !slot.firstChild) slot.replaceChildren(receiptCard(mine.receipt, named(mine.vote)));
  });
}

// --- the whole page ----------------------------------------------------------------------------

function render({ focus = false, restream = false } = {}) {
  translate();
  renderLanguageSwitch();
  renderAccount();
  const view = $("#view");
  const route = state.route;
  if (route.name === "poll") {
    const poll = pollById(route.pollId);
    if (!poll) {
      stopStream();
      view.replaceChildren(el("div", { class: "empty" },
        el("h1", { tabindex: "-1", text: t("not_found") }),
        el("a", { href: "/", "data-route": true, class: "btn btn-secondary", text: t("back") })));
    } else {
      const session = currentSession();
      const key = `${poll.id}/${session ? session.token : ""}`;
      if (restream || state.streamFor !== key) {
        state.notice = null;
        startStream(poll.id);
      }
      renderPoll(view, poll);
    }
  } else {
    stopStream();
    state.notice = null;
    renderHome(view);
  }
  if (focus) $("h1", view)?.focus();
}

async function start() {
  initLanguage();
  loadSession();
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => setLanguage(button.dataset.lang));
  }
  onLanguage(() => render());
  for (const button of document.querySelectorAll("[data-auth-mode]")) {
    button.addEventListener("click", () => setAuthMode(button.dataset.authMode));
  }
  $("#login-form").addEventListener("submit", submitLogin);
  $("#signup-form").addEventListener("submit", submitSignup);
  state.route = parseRoute(location.pathname);
  translate();
  renderLanguageSwitch();
  try {
    await Promise.all([loadPolls(), loadMe()]);
  } catch (error) {
    $("#view").replaceChildren(el("p", { class: "banner banner-bad", role: "alert", text: explain(error) }));
    return;
  }
  render();
  document.body.dataset.ready = "true";
}

start();
