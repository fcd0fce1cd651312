// The public API, as the page uses it: fetch with the stored API key, problem+json as ApiError.

const KEY_STORAGE = "wanserve.apiKey";

/** An HTTP error from the API; `problem` is the RFC 9457 body when the server sent one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problemMessage(status, problem));
    this.name = "ApiError";
    this.status = status;
    this.problem = problem || {};
  }

  /** Field errors as [{field, value, rule}] (empty when the problem names no field). */
  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

function problemMessage(status, problem) {
  if (problem && (problem.detail || problem.title)) return problem.detail || problem.title;
  if (status === 0) return "The server cannot be reached. Is wanserve still running?";
  return `The server answered ${status}.`;
}

/**
 * Whether the server answers at all. Every call reports here (a network failure: down; any HTTP
 * answer: up); the page shows "reconnecting" while it is down, and `retryNow()` wakes whatever
 * waits to try again (event streams, the probe in app.js).
 */
class Connection extends EventTarget {
  online = true;

  report(online) {
    if (online === this.online) return;
    this.online = online;
    this.dispatchEvent(new Event("change"));
  }

  retryNow() {
    this.dispatchEvent(new Event("retry"));
  }
}
export const connection = new Connection();

/** Listeners for "the server wants a key" (401); app.js shows the access panel. */
const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage can be disabled (private mode); the key then lasts for this page only.
  }
  sessionKey = key || "";
}

let sessionKey = getKey();

export function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (sessionKey) headers.Authorization = `Bearer ${sessionKey}`;
  return headers;
}

export function hasKey() {
  return Boolean(sessionKey);
}

/** The ApiError for a non-2xx response; tells the 401 listeners first (unless `quiet`). */
export async function errorFrom(response, { quiet = false } = {}) {
  const problem = await readProblem(response);
  if (response.status === 401 && !quiet) {
    unauthorizedListeners.forEach((listener) => listener(problem));
  }
  return new ApiError(response.status, problem);
}

async function readProblem(response) {
  const type = response.headers.get("content-type") || "";
  if (!type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * fetch() a path of the API; resolves to the parsed JSON body (or the Response with raw=true),
 * rejects with ApiError on any non-2xx answer or network failure. A `quiet` request's 401 does
 * not ask for a key (what it reads is optional: the page works without it).
 */
export async function request(
  path, { method = "GET", body, headers = {}, raw = false, signal, quiet = false } = {},
) {
  const init = { method, headers: authHeaders(headers), signal };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    connection.report(false);
    throw new ApiError(0, null);
  }
  connection.report(true);
  if (!response.ok) throw await errorFrom(response, { quiet });
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  listModels: () => request("/v1/models"),
  listPools: () => request("/v1/pools", { quiet: true }), // an admin's: optional here
  createVideo: (body, headers = {}) => request("/v1/videos", { method: "POST", body, headers }),
  getVideo: (id) => request(`/v1/videos/${encodeURIComponent(id)}`),
  listVideos: ({ after, limit = 10, states = [], order = "desc" } = {}) => {
    const query = new URLSearchParams({ order, limit: String(limit) });
    if (after) query.set("after", after);
    for (const state of states) query.append("state", state);
    return request(`/v1/videos?${query}`);
  },
  deleteVideo: (id) => request(`/v1/videos/${encodeURIComponent(id)}`, { method: "DELETE" }),
  cancelVideo: (id) => request(`/v1/videos/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
  eventsUrl: (id) => `/v1/videos/${encodeURIComponent(id)}/events`,
  contentUrl: (id, variant = "video") =>
    `/v1/videos/${encodeURIComponent(id)}/content?variant=${variant}`,
};

/**
 * A URL the <video>/<img> element can load. Media elements cannot send an Authorization
 * header, so with a key the bytes are fetched here and handed over as a blob: URL.
 */
export async function mediaUrl(id, variant) {
  const url = api.contentUrl(id, variant);
  if (!hasKey()) return url;
  const response = await request(url, { raw: true });
  return URL.createObjectURL(await response.blob());
}
