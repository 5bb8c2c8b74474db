// Calls to the JSON API, its one error shape, and the session kept in this browser.

const SESSION = "vote-ledger.session";

/** A refusal or failure, in the API's shape: ``{"error": {"code", "message", "fields"}}``. */
export class ApiError extends Error {
  constructor(status, code, message, fields = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

let session = null;

export function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(SESSION) || "null");
    if (saved && saved.token && saved.expiresAt > Date.now()) session = saved;
    else localStorage.removeItem(SESSION);
  } catch {
    session = null;
  }
  return session;
}

export function currentSession() {
  return session;
}

export function saveSession(login) {
  session = {
    token: login.accessToken,
    user: login.user,
    expiresAt: Date.now() + login.expiresIn * 1000,
  };
  try { localStorage.setItem(SESSION, JSON.stringify(session)); } catch { /* this tab only */ }
  return session;
}

export function clearSession() {
  session = null;
  try { localStorage.removeItem(SESSION); } catch { /* nothing kept */ }
}

/** ``fetch`` a JSON route; the parsed answer, or an ``ApiError``. */
export async function api(path, { method = "GET", body, auth = false, headers = {} } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  if (auth && session) sent.Authorization = `Bearer ${session.token}`;
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || response.statusText, error.fields || {});
  }
  return data;
}

/** A fresh key for one vote: a retry with it (a lost answer) is recorded once. */
export function idempotencyKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}
