// The experience page: wires the create form, the job list, the pools strip and the API-key
// panel together.

import { connection, getKey, hasKey, onUnauthorized, setKey } from "./api.js";
import { CreateForm } from "./form.js";
import { JobList } from "./jobs.js";
import { PoolStrip } from "./pools.js";

const $ = (id) => document.getElementById(id);

const jobs = new JobList({ onReuse: (params) => form.fill(params) });
const form = new CreateForm({ onCreated: (video) => jobs.added(video) });
const pools = new PoolStrip();

function showAccess(problem) {
  const panel = $("access");
  $("access-message").textContent = hasKey()
    ? `The server refused the stored key${problem?.detail ? ` (${problem.detail})` : ""}. Paste another one.`
    : "Paste the key you were given. It stays in this browser only.";
  if (panel.hidden) {
    panel.hidden = false;
    $("api-key").focus();
  }
}

function updateKeyButton() {
  $("key-button").hidden = !hasKey();
}

let modelsLoaded = false;

async function start() {
  updateKeyButton();
  pools.start();
  const results = await Promise.allSettled([form.loadModels(), jobs.reload()]);
  modelsLoaded = results[0].status === "fulfilled";
  const failed = results.find((r) => r.status === "rejected" && r.reason?.status !== 401);
  if (failed) {
    $("form-error").textContent = `Could not load the models: ${failed.reason.message}`;
    $("form-error").hidden = false;
  }
}

// The server cannot be reached: say so, probe it (1, 2, 4 ... 10 s apart, or at once with
// "Retry now"), and once it answers wake every card's stream and bring the lists up to date.
const PROBE_MAX_S = 10;
let probe = null;

async function reachable() {
  try {
    await fetch("/healthz", { cache: "no-store" });
    return true;
  } catch {
    return false;
  }
}

async function probeUntilBack() {
  let wait = 1;
  while (!connection.online) {
    for (let left = wait; left > 0 && !connection.online && !probe.now; left -= 1) {
      $("connection-text").textContent = `Reconnecting to the server: next try in ${left} s.`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    probe.now = false;
    $("connection-text").textContent = "Reconnecting to the server: trying now…";
    if (await reachable()) connection.report(true);
    wait = Math.min(wait * 2, PROBE_MAX_S);
  }
}

connection.addEventListener("change", () => {
  const banner = $("connection");
  if (!connection.online) {
    banner.hidden = false;
    banner.dataset.state = "down";
    if (!probe) {
      probe = { now: false };
      probeUntilBack().finally(() => (probe = null));
    }
    return;
  }
  banner.dataset.state = "up";
  $("connection-text").textContent = "Connected again.";
  setTimeout(() => { if (connection.online) banner.hidden = true; }, 3000);
  connection.retryNow(); // the cards' streams reconnect now, not after their back-off
  if (!modelsLoaded) start();
  else jobs.loadLive();
});

$("connection-retry").addEventListener("click", () => {
  if (probe) probe.now = true;
  connection.retryNow();
});

onUnauthorized(showAccess);

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    $("access-message").textContent = "Paste a key first.";
    $("api-key").focus();
    return;
  }
  setKey(key);
  $("api-key").value = "";
  $("access").hidden = true;
  $("form-error").hidden = true;
  start();
});

$("key-forget").addEventListener("click", () => {
  setKey("");
  $("api-key").value = "";
  updateKeyButton();
  $("access-message").textContent = "The key is forgotten. Paste one to go on.";
});

$("key-button").addEventListener("click", () => {
  $("access-message").textContent = getKey()
    ? "A key is stored in this browser. Paste another one to replace it, or forget it."
    : "Paste the key you were given. It stays in this browser only.";
  $("access").hidden = false;
  $("api-key").focus();
});

start();
