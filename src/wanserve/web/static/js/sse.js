// Follow one task's Server-Sent Events, resumable, with a polling fallback.
//
// Why fetch() and not EventSource: EventSource cannot send an Authorization header, and a
// server with API keys needs one. This reader does what EventSource does (parses the stream,
// remembers the last event id, reconnects with Last-Event-ID after a drop, honours `retry:`)
// and adds the header. Only when the stream fails again and again does it fall back to
// polling GET /v1/videos/{id}.

import { api, authHeaders, connection, errorFrom } from "./api.js";

const MAX_STREAMS = 4; // browsers allow 6 HTTP/1.1 connections per host; keep 2 for the rest
const MAX_FAILURES = 5; // consecutive attempts with no event before polling instead
const POLL_MS = 2000;
let openStreams = 0;

/** Wait `ms`, or less: until aborted, or until someone asks to retry now (connection.retryNow). */
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      connection.removeEventListener("retry", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    connection.addEventListener("retry", done);
    signal.addEventListener("abort", done, { once: true });
  });

/** Parse an SSE body into {id, event, data} messages (the WHATWG event-stream rules). */
async function* readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  let buffer = "";
  let message = { id: null, event: "", data: [], retry: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (message.data.length) {
          yield { id: message.id, event: message.event || "message", data: message.data.join("\n"), retry: message.retry };
        } else if (message.retry !== null) {
          yield { id: null, event: null, data: "", retry: message.retry }; // "retry:" alone
        }
        message = { id: null, event: "", data: [], retry: null };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "data") message.data.push(text);
      else if (field === "event") message.event = text;
      else if (field === "id") message.id = text;
      else if (field === "retry" && /^\d+$/.test(text)) message.retry = Number(text);
    }
  }
}

function parseData(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}

/**
 * Follow task `id`. `handlers.onEvent(type, data)` gets every event and resolves to true once
 * the task is finished; `handlers.onVideo(video)` gets polled objects (fallback) and also
 * returns true when finished; `handlers.onStop(error)` is called once at the end.
 * Returns { stop() }.
 */
export function follow(id, handlers) {
  const abort = new AbortController();
  const signal = abort.signal;
  const state = { lastId: null, retryMs: 1000, failures: 0 };

  async function streamOnce() {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (state.lastId) headers["Last-Event-ID"] = state.lastId;
    let response;
    try {
      response = await fetch(api.eventsUrl(id), { headers, signal, cache: "no-store" });
    } catch (error) {
      if (signal.aborted) throw error;
      throw await unreachable();
    }
    connection.report(true);
    if (!response.ok) throw await errorFrom(response);
    let received = false;
    for await (const message of readEvents(response.body, signal)) {
      if (message.retry) state.retryMs = message.retry;
      if (message.event === null) continue;
      received = true;
      state.failures = 0;
      if (message.id) state.lastId = message.id;
      if (await handlers.onEvent(message.event, parseData(message.data))) return true;
    }
    if (!received) state.failures += 1; // a stream that closes at once counts as a failure
    return false;
  }

  /**
   * The stream could not be opened. Is the server down (an outage: wait, it says nothing about
   * the stream), or is it only the stream that fails (a proxy that breaks SSE: counts towards
   * polling)? One GET tells, and its answer updates the card meanwhile.
   */
  async function unreachable() {
    try {
      await handlers.onVideo(await api.getVideo(id));
    } catch (error) {
      if (error.status === 0) return Object.assign(new Error("offline"), { outage: true });
    }
    return new Error("the event stream failed");
  }

  async function poll() {
    while (!signal.aborted) {
      try {
        if (await handlers.onVideo(await api.getVideo(id))) return;
      } catch (error) {
        if (error.status === 401 || error.status === 404) throw error;
      }
      await sleep(POLL_MS, signal);
    }
  }

  async function run() {
    while (!signal.aborted) {
      if (state.failures >= MAX_FAILURES || openStreams >= MAX_STREAMS) {
        // Too many streams open, or the stream keeps failing: one GET now, then try again.
        if (state.failures >= MAX_FAILURES) return poll();
        try {
          if (await handlers.onVideo(await api.getVideo(id))) return;
        } catch (error) {
          if (error.status === 401 || error.status === 404) throw error;
        }
        await sleep(POLL_MS * 2, signal);
        continue;
      }
      openStreams += 1;
      try {
        if (await streamOnce()) return;
      } catch (error) {
        if (signal.aborted) return;
        if (error.status === 401 || error.status === 404) throw error;
        if (!error.outage) state.failures += 1;
      } finally {
        openStreams -= 1;
      }
      // The stream ended before the task did (server restart, proxy timeout): resume it. While
      // the server is down, app.js probes it and wakes this sleep once it answers again.
      const backoff = state.retryMs * 2 ** Math.max(0, state.failures - 1);
      await sleep(connection.online ? Math.min(backoff, 15000) : 30000, signal);
    }
  }

  run().then(
    () => handlers.onStop?.(null),
    (error) => handlers.onStop?.(signal.aborted ? null : error),
  );
  return { stop: () => abort.abort() };
}
