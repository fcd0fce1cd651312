// The person's videos: the running and queued jobs pinned on top (all of them, with totals),
// then the finished ones as a compact grid, newest first, by status, a page at a time; or one
// job on its own (/videos/{id}).

import { api, connection } from "./api.js";
import { JobCard } from "./card.js";
import { isTerminal } from "./params.js";

const PAGE_SIZE = 10;
const LIVE_LIMIT = 100; // the API's largest page: more live jobs than that show as "100+"
const LIVE = ["in_progress", "queued"];
const FILTERS = {
  all: ["completed", "failed", "cancelled"],
  completed: ["completed"],
  failed: ["failed"],
  cancelled: ["cancelled"],
};

const $ = (id) => document.getElementById(id);

export class JobList {
  constructor({ onReuse }) {
    this.handlers = {
      onReuse,
      onCreated: (video) => this.added(video),
      onDeleted: (card) => this.forget(card),
      onChange: (card) => this.place(card),
    };
    this.cards = new Map();
    this.live = $("jobs-live");
    this.list = $("jobs");
    this.more = $("load-more");
    this.filter = "all";
    this.lastId = null;
    this.liveCapped = false;
    this.more.addEventListener("click", () => this.loadMore());
    for (const button of document.querySelectorAll("[data-filter]")) {
      button.addEventListener("click", () => this.setFilter(button.dataset.filter));
    }
    const tick = () => this.cards.forEach((card) => card.tick());
    setInterval(tick, 1000);
    connection.addEventListener("change", tick); // "may be out of date" comes and goes at once
  }

  /** The job id of a /videos/{id} address, if the page was opened on one. */
  static singleId() {
    const match = location.pathname.match(/^\/videos\/([^/]+)\/?$/);
    return match ? decodeURIComponent(match[1]) : null;
  }

  async reload() {
    this.cards.forEach((card) => card.stop());
    this.cards.clear();
    this.live.replaceChildren();
    this.list.replaceChildren();
    this.lastId = null;
    const single = JobList.singleId();
    document.body.classList.toggle("single", Boolean(single));
    if (single) return this.loadOne(single);
    await Promise.all([this.loadLive(), this.loadMore()]);
  }

  async loadOne(id) {
    const status = $("jobs-status");
    try {
      this.add(await api.getVideo(id));
      status.textContent = "";
    } catch (error) {
      status.textContent = error.status === 404 ? "There is no such video (or it was deleted)." : `Could not load the video: ${error.message}`;
    } finally {
      this.updateEmpty();
    }
  }

  /** Every running and queued job, whatever its age, oldest first (the queue's order). */
  async loadLive() {
    if (JobList.singleId()) return; // one job alone: its own card follows it
    try {
      const page = await api.listVideos({ states: LIVE, limit: LIVE_LIMIT, order: "asc" });
      this.liveCapped = Boolean(page.has_more);
      for (const video of page.data || []) this.add(video);
    } catch (error) {
      if (error.status !== 401) $("jobs-status").textContent = `Could not load your videos: ${error.message}`;
    }
    this.updateTotals();
  }

  async loadMore() {
    this.more.disabled = true;
    const status = $("jobs-status");
    status.textContent = "Loading…";
    const filter = this.filter;
    try {
      const page = await api.listVideos({ after: this.lastId, limit: PAGE_SIZE, states: FILTERS[filter] });
      if (filter !== this.filter) return; // the filter changed meanwhile: that list is gone
      for (const video of page.data || []) this.add(video);
      this.lastId = page.last_id || this.lastId;
      this.more.hidden = !page.has_more;
      status.textContent = "";
    } catch (error) {
      status.textContent = error.status === 401 ? "" : `Could not load your videos: ${error.message}`;
    } finally {
      this.more.disabled = false;
      this.updateEmpty();
    }
  }

  setFilter(filter) {
    if (!FILTERS[filter] || filter === this.filter) return;
    this.filter = filter;
    for (const button of document.querySelectorAll("[data-filter]")) {
      button.setAttribute("aria-pressed", String(button.dataset.filter === filter));
    }
    for (const card of [...this.cards.values()]) {
      if (isTerminal(card.status)) this.forget(card, { quiet: true });
    }
    this.lastId = null;
    this.loadMore();
  }

  /** A job made on this page (the form, or "run again"): pinned with the live ones at once. */
  added(video) {
    const card = this.add(video, { isNew: true });
    card.element.scrollIntoView({ behavior: "smooth", block: "nearest" });
    return card;
  }

  /** Show a video where it belongs and follow it. */
  add(video, { isNew = false } = {}) {
    const known = this.cards.get(video.id);
    if (known) {
      known.update(video);
      return known;
    }
    const card = new JobCard(video, this.handlers, { isNew });
    this.cards.set(video.id, card);
    this.place(card, { fromHistory: !isNew });
    card.start();
    this.updateEmpty();
    return card;
  }

  /**
   * Live jobs: running first, then queued in queue order. A job that ends moves to the top of
   * the finished grid (or leaves the page when the filter does not show its status).
   */
  place(card, { fromHistory = false } = {}) {
    if (JobList.singleId()) {
      if (!card.element.isConnected) this.live.append(card.element);
      return;
    }
    if (!isTerminal(card.status)) {
      const cards = [...this.cards.values()].filter((c) => !isTerminal(c.status));
      const rank = (c) => [LIVE.indexOf(c.status), c.video.created_at || 0, c.order ?? 0];
      card.order ??= this.cards.size;
      cards.sort((a, b) => compare(rank(a), rank(b)));
      this.live.replaceChildren(...cards.map((c) => c.element));
    } else if (!FILTERS[this.filter].includes(card.status)) {
      this.forget(card, { quiet: true });
      return;
    } else if (fromHistory) {
      this.list.append(card.element);
    } else {
      this.list.prepend(card.element);
    }
    this.updateTotals();
  }

  forget(card, { quiet = false } = {}) {
    card.stop();
    card.element.remove();
    this.cards.delete(card.id);
    if (!quiet) {
      const status = $("jobs-status");
      status.textContent = "Deleted.";
      setTimeout(() => { if (status.textContent === "Deleted.") status.textContent = ""; }, 4000);
    }
    this.updateTotals();
    this.updateEmpty();
  }

  updateTotals() {
    const counts = { in_progress: 0, queued: 0 };
    for (const card of this.cards.values()) if (card.status in counts) counts[card.status] += 1;
    const plus = this.liveCapped ? "+" : "";
    const parts = [];
    if (counts.in_progress) parts.push(`${counts.in_progress} running`);
    if (counts.queued) parts.push(`${counts.queued}${plus} queued`);
    $("jobs-totals").textContent = parts.join(" · ");
    $("top-totals").textContent = parts.join(" · ");
    $("top-totals").hidden = parts.length === 0 || JobList.singleId() !== null;
    $("live-title").hidden = this.live.childElementCount === 0;
  }

  updateEmpty() {
    const none = this.cards.size === 0;
    $("jobs-empty").hidden = !none || JobList.singleId() !== null;
    document.querySelector(".history-head").hidden = none && this.filter === "all";
    $("jobs-filtered-empty").hidden = none || this.list.childElementCount > 0 || this.filter === "all";
  }
}

function compare(a, b) {
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}
