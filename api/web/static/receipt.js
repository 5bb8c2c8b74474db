// The vote receipt: shown, downloadable, and verified in the browser with Web Crypto alone.
//
// A receipt (see VERIFY.md) holds the vote's event body as the ledger stores it, its leaf hash,
// an RFC 9162 inclusion proof, and a C2SP signed note (the checkpoint) of a tree that holds it.
// Verifying it needs only the ledger's verifier key: SHA-256(0x00 || body) must be the leaf hash,
// the proof must lead from that leaf to the checkpoint's root, and the checkpoint must carry an
// Ed25519 signature by the key.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { icon } from "./icons.js";

const encoder = new TextEncoder();

function fromBase64(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function same(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** RFC 9162 leaf hash: SHA-256(0x00 || data). */
export async function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

/** The root an RFC 9162 §2.1.3.2 inclusion proof leads to, or null if the proof is malformed. */
export async function rootFromInclusion(leafIndex, treeSize, leaf, proof) {
  if (!(Number.isSafeInteger(leafIndex) && Number.isSafeInteger(treeSize)) || leafIndex < 0 || leafIndex >= treeSize) {
    return null;
  }
  if (leaf.length !== 32 || proof.some((p) => p.length !== 32)) return null;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat(Uint8Array.of(1), p, r));
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await sha256(concat(Uint8Array.of(1), r, p));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

/** A C2SP signed note: the signed text (up to the last blank line) and its signature lines. */
export function splitNote(note) {
  const end = note.lastIndexOf("\n\n");
  if (end < 0 || !note.endsWith("\n")) throw new Error("not a signed note");
  const signatures = [];
  for (const line of note.slice(end + 2, -1).split("\n")) {
    const found = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!found) throw new Error("a signature line is malformed");
    signatures.push({ name: found[1], blob: fromBase64(found[2]) });
  }
  return { text: note.slice(0, end + 1), signatures };
}

/** A C2SP tlog-checkpoint in a signed note: its signed text, origin, size, root, signatures. */
export function parseCheckpoint(note) {
  const { text, signatures } = splitNote(note);
  const [origin, size, root] = text.split("\n");
  if (!origin || !/^[0-9]{1,16}$/.test(size || "")) throw new Error("the checkpoint's text is malformed");
  return { text, origin, size: Number(size), root: fromBase64(root || ""), signatures };
}

/** A note verifier key, ``<name>+<key id, 8 hex>+<base64(0x01 || Ed25519 public key)>``. */
export async function parseVerifierKey(text) {
  // <name>+<hex>+<base64>: the name holds no "+", the base64 may (split as Go's note package does)
  const found = /^([^+]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(String(text));
  if (!found) throw new Error("the verifier key is malformed");
  const [, name, hex, encoded] = found;
  const key = fromBase64(encoded);
  if (key.length !== 33 || key[0] !== 1) throw new Error("the verifier key is not an Ed25519 key");
  const id = (await sha256(concat(encoder.encode(name), Uint8Array.of(0x0a), key))).slice(0, 4);
  const stated = Uint8Array.from(hex.match(/../g), (pair) => parseInt(pair, 16));
  return { name, id, public: key.slice(1), idMatches: same(id, stated) };
}

/** Whether this browser's Web Crypto verifies Ed25519 (Chromium 137+, Firefox 129+, Safari 17+). */
async function importEd25519(publicKey) {
  try {
    return await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  } catch (error) {
    if (error && (error.name === "NotSupportedError" || error.name === "TypeError")) return null;
    throw error;
  }
}

/**
 * Whether the signed note ``note`` carries a valid Ed25519 signature by the note verifier key
 * ``vkey``: true or false, or null where this browser cannot check Ed25519 signatures.
 */
export async function noteSignedBy(note, vkey) {
  let key;
  let parts;
  try {
    key = await parseVerifierKey(vkey);
    parts = splitNote(note);
  } catch {
    return false;
  }
  // every signature by the key must hold (as Go's note package has it), and there must be one
  const mine = parts.signatures.filter((s) => s.name === key.name && same(s.blob.slice(0, 4), key.id));
  if (!key.idMatches || mine.length === 0 || mine.some((s) => s.blob.length !== 68)) return false;
  const imported = await importEd25519(key.public);
  if (imported === null) return null;
  const text = encoder.encode(parts.text);
  for (const signature of mine) {
    if (!await crypto.subtle.verify({ name: "Ed25519" }, imported, signature.blob.slice(4), text)) return false;
  }
  return true;
}

/**
 * Verify ``receipt`` against ``verifierKey``. ``expected`` (``{pollId, candidateId}``, and their
 * names to show) is what the vote was for. The outcome: ``{status: "verified" | "failed" | "unsupported" | "no-webcrypto",
 * checks: [{key, ok, values}]}``; every check that could run, ran.
 */
export async function verifyReceipt(receipt, verifierKey, expected = {}) {
  if (!globalThis.crypto || !crypto.subtle) return { status: "no-webcrypto", checks: [] };
  const checks = [];
  const check = (key, ok, values = {}) => {
    checks.push({ key, ok: Boolean(ok), values });
    return Boolean(ok);
  };
  const body = encoder.encode(String(receipt.body ?? ""));
  let vote = {};
  try {
    const event = JSON.parse(receipt.body);
    vote = event && event.type === "VoteCast" && event.data ? event.data : {};
  } catch { /* checked just below */ }
  const matches = vote.poll_id !== undefined && (expected.pollId === undefined || vote.poll_id === expected.pollId)
    && (expected.candidateId === undefined || vote.candidate_id === expected.candidateId);
  check("check_body", matches, matches
    ? { poll: expected.pollTitle ?? vote.poll_id, candidate: expected.candidateName ?? vote.candidate_id }
    : { poll: vote.poll_id ?? "?", candidate: vote.candidate_id ?? "?" });
  const leaf = await leafHash(body);
  let stated = new Uint8Array();
  try { stated = fromBase64(receipt.leafHash || ""); } catch { /* fails below */ }
  check("check_leaf", same(leaf, stated) && receipt.leafIndex === receipt.seq - 1);
  let note = null;
  try { note = parseCheckpoint(String(receipt.checkpoint || "")); } catch { /* fails below */ }
  let proof = [];
  try { proof = (receipt.inclusionProof || []).map(fromBase64); } catch { proof = null; }
  const root = proof ? await rootFromInclusion(receipt.leafIndex, receipt.treeSize, leaf, proof) : null;
  check("check_inclusion", root !== null && note !== null && same(root, note.root), { size: receipt.treeSize });
  check("check_checkpoint", note !== null && note.size === receipt.treeSize);
  let key = null;
  try { key = await parseVerifierKey(verifierKey); } catch { /* fails below */ }
  check("check_key", key !== null && key.idMatches);
  const signed = note ? await noteSignedBy(String(receipt.checkpoint), verifierKey) : false;
  if (signed === null) return { status: checks.every((c) => c.ok) ? "unsupported" : "failed", checks };
  check("check_signature", signed);
  return { status: checks.every((c) => c.ok) ? "verified" : "failed", checks };
}

let published = null;

/** The ledger's published verifier key (``GET /api/v1/log/key``), asked once. */
export async function publishedKey() {
  if (!published) {
    published = api("/api/v1/log/key").catch((error) => {
      published = null;
      throw error;
    });
  }
  return published;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Offer ``receipt`` as a JSON file: the object exactly as the vote's answer gave it. */
export function downloadReceipt(receipt, pollId) {
  const blob = new Blob([`${JSON.stringify(receipt, null, 2)}\n`], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = `vote-receipt-${pollId}-${receipt.seq}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function short(text) {
  return text.length > 24 ? `${text.slice(0, 12)}…${text.slice(-8)}` : text;
}

/**
 * A receipt card for ``receipt`` (a vote's, in the API's shape) of the vote ``vote``
 * (``{pollId, candidateId}``). The card verifies on request and downloads the file.
 */
export function receiptCard(receipt, vote) {
  const card = element("section", "card receipt");
  card.setAttribute("aria-labelledby", "receipt-title");
  const title = element("h2", "card-title with-icon");
  title.append(icon("shield"), element("span", "", t("receipt")));
  title.id = "receipt-title";
  const intro = element("p", "muted", t("receipt_intro", { seq: receipt.seq }));
  let origin = "";
  try { origin = parseCheckpoint(receipt.checkpoint).origin; } catch { origin = "?"; }
  const facts = element("dl", "facts");
  const fact = (label, value, mono = false, full = value) => {
    const wrap = element("div", "fact");
    const dd = element("dd", mono ? "mono" : "", value);
    if (full !== value) dd.title = full;
    wrap.append(element("dt", "", label), dd);
    facts.append(wrap);
    return dd;
  };
  fact(t("receipt_entry"), `#${receipt.seq}`);
  fact(t("receipt_tree"), String(receipt.treeSize));
  fact(t("receipt_leaf"), short(String(receipt.leafHash)), true, String(receipt.leafHash));
  fact(t("receipt_origin"), origin, true);
  const keyValue = fact(t("receipt_key"), "", true);
  keyValue.parentElement.hidden = true;
  const actions = element("div", "actions actions-stacked");
  const verify = element("button", "btn btn-primary", t("verify"));
  verify.type = "button";
  const download = element("button", "btn btn-secondary");
  download.append(icon("download"), element("span", "", t("download")));
  download.type = "button";
  actions.append(verify, download);
  const outcome = element("div", "verification");
  outcome.setAttribute("role", "status");
  outcome.setAttribute("aria-live", "polite");
  card.append(title, intro, facts, actions, outcome);

  download.addEventListener("click", () => downloadReceipt(receipt, vote.pollId));
  verify.addEventListener("click", async () => {
    verify.disabled = true;
    outcome.replaceChildren(element("p", "muted", t("verifying")));
    let result;
    try {
      const key = await publishedKey();
      keyValue.textContent = short(key.verifierKey);
      keyValue.title = key.verifierKey;
      keyValue.parentElement.hidden = false;
      result = await verifyReceipt(receipt, key.verifierKey, vote);
    } catch {
      result = { status: "no-key", checks: [] };
    }
    verify.disabled = false;
    showOutcome(outcome, result);
  });
  return card;
}

function showOutcome(outcome, result) {
  const banner = {
    verified: ["ok", t("verified")],
    failed: ["bad", t("not_verified")],
    unsupported: ["warn", t("no_ed25519")],
    "no-webcrypto": ["warn", t("no_webcrypto")],
    "no-key": ["bad", t("no_key")],
  }[result.status];
  const box = element("p", `banner banner-${banner[0]}`, banner[1]);
  box.dataset.status = result.status;
  const list = element("ul", "checks");
  for (const c of result.checks) {
    const item = element("li", c.ok ? "check-ok" : "check-bad");
    item.append(element("span", "check-mark", c.ok ? "✓" : "✗"), element("span", "", t(c.key, c.values)));
    item.dataset.check = c.key;
    list.append(item);
  }
  outcome.replaceChildren(box, list);
}
