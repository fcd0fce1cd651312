// The workers' pools from GET /v1/pools, as a strip under the header: per pool its name,
// backend, state (cold, scaling up, warm, scaling down, running, unavailable: its cluster is out
// of reach), replicas up, busy slots and how long it has been idle. Read every 5 s while the tab
// is visible. The list shows the whole deployment, so it is an admin's (or an open server's):
// the strip stays hidden when the server refuses it (401/403: until the key changes) or cannot
// answer (until it answers again).

import { api } from "./api.js";
import { poolStateLabel, roughly, when } from "./format.js";

const REFRESH_MS = 5000;

const $ = (id) => document.getElementById(id);

export class PoolStrip {
  constructor() {
    this.strip = $("pools");
    this.list = $("pools-list");
    this.timer = null;
    this.refused = false;
    this.generation = 0; // an answer to an older read is dropped
    document.addEventListener("visibilitychange", () => this.schedule(0));
  }

  /** Read the pools now and every 5 s on (the page loaded, or its key changed). */
  start() {
    this.refused = false;
    this.generation += 1;
    this.schedule(0);
  }

  schedule(delay) {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.refused || document.hidden) return; // a hidden tab reads nothing
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    const generation = ++this.generation;
    let pools = null;
    let refused = false;
    try {
      pools = (await api.listPools()).data;
    } catch (error) {
      refused = error.status === 401 || error.status === 403;
    }
    if (generation !== this.generation) return;
    this.refused = refused;
    if (pools) this.render(pools);
    else this.strip.hidden = true;
    this.schedule(REFRESH_MS);
  }

  render(pools) {
    const workers = new Set(pools.map((pool) => pool.worker));
    const items = pools.map((pool) => poolItem(pool, workers.size > 1));
    this.list.replaceChildren(...(items.length ? items : [noWorker()]));
    this.strip.hidden = false;
  }
}

function span(className, text, label = "") {
  const element = document.createElement("span");
  element.className = className;
  if (label) element.append(hiddenText(label));
  element.append(text);
  return element;
}

/** Words a screen reader says and the strip does not show (the layout says them). */
function hiddenText(text) {
  const element = document.createElement("span");
  element.className = "sr-only";
  element.textContent = text;
  return element;
}

function poolItem(pool, showWorker) {
  const item = document.createElement("li");
  item.className = "pool";
  item.dataset.state = pool.state;
  item.dataset.name = pool.name;
  item.dataset.worker = pool.worker;
  const name = showWorker ? `${pool.name} (${pool.worker})` : pool.name;
  const replicas = `${pool.replicas} ${pool.replicas === 1 ? "replica" : "replicas"} up`;
  item.append(
    span("pool-name", name, "Pool "),
    span("pool-backend", pool.backend, ", backend "),
    span("pool-state", poolStateLabel(pool.state), ", "),
    span("pool-replicas", replicas, ", "),
    span("pool-busy", `${pool.busy}/${pool.capacity} busy`, ", "),
  );
  if (pool.idle_since) item.append(idleSince(pool));
  return item;
}

function idleSince(pool) {
  const time = document.createElement("time");
  time.dateTime = new Date(pool.idle_since * 1000).toISOString();
  time.textContent = roughly(Date.now() / 1000 - pool.idle_since);
  const stops = pool.kind === "warm" && pool.idle_timeout_s > 0;
  const after = stops ? `; its engines stop after ${roughly(pool.idle_timeout_s)} idle` : "";
  const element = span("pool-idle", "idle for ", ", ");
  element.title = `Idle since ${when(pool.idle_since)}${after}`;
  element.append(time);
  return element;
}

function noWorker() {
  const item = document.createElement("li");
  item.className = "pool empty";
  item.textContent = "No worker is reporting yet.";
  return item;
}
