// The experience page: wires the create form, the job list and the API-key panel together.

import { getKey, hasKey, onUnauthorized, setKey } from "./api.js";
import { CreateForm } from "./form.js";
import { JobList } from "./jobs.js";

const $ = (id) => document.getElementById(id);

const jobs = new JobList({ onReuse: (params) => form.fill(params) });
const form = new CreateForm({
  onCreated: (video) => {
    jobs.add(video, { atTop: true, isNew: true });
    $("jobs").firstElementChild?.scrollIntoView({ behavior: "smooth", block: "nearest" });
  },
});

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

async function start() {
  updateKeyButton();
  const results = await Promise.allSettled([form.loadModels(), jobs.reload()]);
  const failed = results.find((r) => r.status === "rejected" && r.reason?.status !== 401);
  if (failed) {
    $("form-error").textContent = `Could not load the models: ${failed.reason.message}`;
    $("form-error").hidden = false;
  }
}

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
