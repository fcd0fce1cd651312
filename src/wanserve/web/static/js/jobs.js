// Job cards (follow, watch, cancel, reuse) and the paginated list of the person's videos.

import { api, mediaUrl } from "./api.js";
import { duration, expertLabel, phaseLabel, statusLabel, when } from "./format.js";
import { isTerminal, statusOf, videoParams } from "./params.js";
import { follow } from "./sse.js";

const PAGE_SIZE = 10;
const PARAM_LABELS = [
  ["model", "Model"],
  ["size", "Size"],
  ["num_frames", "Frames"],
  ["fps", "FPS"],
  ["seconds", "Seconds"],
  ["num_inference_steps", "Steps"],
  ["guidance_scale", "Guidance"],
  ["guidance_scale_2", "Guidance, low-noise"],
  ["shift", "Shift"],
  ["seed", "Seed"],
  ["negative_prompt", "Negative prompt"],
];

const nowSeconds = () => Date.now() / 1000;

/** One job's card: renders a video object and keeps it live until the job ends. */
class JobCard {
  constructor(video, { onReuse, isNew }) {
    this.onReuse = onReuse;
    this.element = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
    this.element.dataset.id = video.id;
    if (isNew) this.element.classList.add("new");
    this.part = (role) => this.element.querySelector(`[data-role="${role}"]`);
    this.action = (name) => this.element.querySelector(`[data-action="${name}"]`);
    this.action("cancel").addEventListener("click", () => this.cancel());
    this.action("reuse").addEventListener("click", () => this.onReuse(videoParams(this.video)));
    this.steps = []; // [unix seconds, step] of step events, for the ETA
    this.follower = null;
    this.mediaShown = false;
    this.update(video);
  }

  get id() {
    return this.video.id;
  }

  get status() {
    return statusOf(this.video);
  }

  update(video) {
    this.video = { ...this.video, ...video };
    if (this.video.eta_seconds !== undefined && video.eta_seconds !== undefined) {
      this.etaAt = nowSeconds();
    }
    this.render();
  }

  render() {
    const video = this.video;
    const status = this.status;
    this.element.dataset.status = status;
    this.part("badge").textContent = statusLabel(status);
    const meta = [video.model, when(video.created_at)].filter(Boolean).join(" · ");
    this.part("meta").textContent = meta;
    this.part("prompt").textContent = video.prompt || videoParams(video).prompt || "";
    const live = !isTerminal(status);
    this.part("live").hidden = !live;
    const cancel = this.action("cancel");
    cancel.hidden = !live;
    cancel.disabled = Boolean(video.cancel_requested);
    cancel.textContent = video.cancel_requested ? "Cancelling…" : "Cancel";
    if (live) this.renderProgress();
    this.renderOutcome(status);
  }

  renderProgress() {
    const video = this.video;
    const step = Number(video.step || 0);
    const total = Number(video.total_steps || videoParams(video).num_inference_steps || 0);
    let phase = this.status === "queued" ? "queued" : video.phase || "starting";
    if (phase === "queued" && this.status === "in_progress") phase = "starting";
    let text = phaseLabel(phase);
    if (phase === "queued" && video.queue_position !== undefined && video.queue_position !== null) {
      // queue_position counts the jobs ahead (0: this one starts next).
      const ahead = Number(video.queue_position);
      text = ahead === 0 ? "Next in the queue" : `In the queue: ${ahead} ahead of this one`;
    }
    if (phase === "denoising" && total) text = `Denoising: step ${step} of ${total}`;
    if (phase === "denoising" && this.expert) text += ` (${expertLabel(this.expert)})`;
    if (video.cancel_requested) text = `Cancelling… (${text.charAt(0).toLowerCase()}${text.slice(1)})`;
    this.part("phase").textContent = text;
    const bar = this.part("progress");
    bar.max = total || 1;
    bar.value = Math.min(step, total || 1);
    bar.setAttribute("aria-valuetext", total ? `step ${step} of ${total}` : text);
    this.renderTiming();
  }

  /** Elapsed time and ETA; called every second by the list while the job is live. */
  renderTiming() {
    const video = this.video;
    const start = this.status === "queued" ? video.created_at : video.started_at || video.created_at;
    if (!start) return;
    const parts = [`${duration(nowSeconds() - start)} elapsed`];
    const eta = this.eta();
    if (eta !== null) parts.push(`about ${duration(eta)} left`);
    this.part("timing").textContent = parts.join(" · ");
  }

  /** Seconds left: measured from this run's denoising steps, else the server's estimate. */
  eta() {
    const video = this.video;
    const total = Number(video.total_steps || 0);
    if (this.steps.length >= 2 && total && video.phase === "denoising") {
      const [t0, s0] = this.steps[0];
      const [t1, s1] = this.steps[this.steps.length - 1];
      if (s1 > s0) return Math.max(0, (total - s1) * ((t1 - t0) / (s1 - s0)) - (nowSeconds() - t1));
    }
    if (typeof video.eta_seconds === "number" && this.etaAt) {
      const left = video.eta_seconds - (nowSeconds() - this.etaAt);
      return left >= 1 ? left : null; // an estimate that ran out says nothing
    }
    return null;
  }

  renderOutcome(status) {
    const video = this.video;
    const reason = this.part("reason");
    reason.hidden = true;
    if (status === "failed") {
      const error = video.error || {};
      reason.textContent = `Failed: ${error.message || error.code || "the engine stopped with an error"}`;
      reason.hidden = false;
    } else if (status === "cancelled") {
      reason.textContent = `Cancelled${video.completed_at ? ` at ${when(video.completed_at)}` : ""}.`;
      reason.hidden = false;
    }
    if (isTerminal(status)) this.renderParams();
    if (status === "completed" && !this.mediaShown) {
      this.mediaShown = true;
      this.showMedia().catch(() => {
        this.mediaShown = false;
        reason.textContent = "The video is finished but could not be loaded; reload to try again.";
        reason.hidden = false;
      });
    }
  }

  async showMedia() {
    const video = this.part("video");
    const [width, height] = String(this.video.size || "").split("x").map(Number);
    if (width && height) video.style.aspectRatio = `${width} / ${height}`; // no letterbox
    const poster = await mediaUrl(this.id, "thumbnail").catch(() => null);
    if (poster) video.poster = poster;
    const source = await mediaUrl(this.id, "video");
    video.src = source;
    video.setAttribute("aria-label", `Generated video: ${this.video.prompt || this.id}`);
    this.part("media").hidden = false;
    const download = this.action("download");
    download.href = source;
    download.download = `wanserve-${this.id}.mp4`;
    download.hidden = false;
  }

  renderParams() {
    const params = videoParams(this.video);
    const list = this.part("params");
    const rows = [];
    for (const [name, label] of PARAM_LABELS) {
      const value = params[name];
      if (value === undefined || value === "" || value === null) continue;
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      rows.push(dt, dd);
    }
    const timings = this.video.timings;
    if (timings && typeof timings === "object") {
      const spent = Object.entries(timings)
        .filter(([, seconds]) => typeof seconds === "number" && seconds > 0.05)
        .map(([phase, seconds]) => `${phaseLabel(phase).toLowerCase()} ${seconds.toFixed(1)} s`);
      if (spent.length) {
        const dt = document.createElement("dt");
        dt.textContent = "Time";
        const dd = document.createElement("dd");
        dd.textContent = spent.join(", ");
        rows.push(dt, dd);
      }
    }
    list.replaceChildren(...rows);
    this.part("params-box").hidden = rows.length === 0;
  }

  async cancel() {
    const button = this.action("cancel");
    button.disabled = true;
    button.textContent = "Cancelling…";
    try {
      // A running job stays in_progress (cancel_requested) until the worker has stopped it;
      // its events then bring the cancelled state.
      this.update(await api.cancelVideo(this.id));
    } catch (error) {
      if (error.status === 409) await this.refresh().catch(() => {});
      else {
        this.update({});
        this.showNotice(`Could not cancel: ${error.message}`);
      }
    }
  }

  showNotice(text) {
    const reason = this.part("reason");
    reason.textContent = text;
    reason.hidden = false;
  }

  async refresh() {
    this.update(await api.getVideo(this.id));
    return isTerminal(this.status);
  }

  /** Follow the job's events until it ends (no-op for finished jobs). */
  start() {
    if (isTerminal(this.status) || this.follower) return;
    if (this.status === "queued" && this.video.queue_position == null) {
      // Lists and create answers carry no queue position; one GET fetches it (events update it).
      this.refresh().catch(() => {});
    }
    this.follower = follow(this.id, {
      onEvent: (type, data) => this.onEvent(type, data),
      onVideo: (video) => {
        this.update(video);
        return isTerminal(this.status);
      },
      onStop: (error) => {
        this.follower = null;
        if (error && error.status !== 401) this.showNotice(`Lost track of this job: ${error.message}`);
      },
    });
  }

  stop() {
    this.follower?.stop();
    this.follower = null;
  }

  /** One SSE event; resolves to true once the job is finished. */
  async onEvent(type, payload) {
    // Accept both the bare data object and a whole TaskEvent {type, data, at}.
    const wrapped = payload && typeof payload.data === "object" && payload.type === type;
    const data = (wrapped ? payload.data : payload) || {};
    const at = (wrapped ? payload.at : data.at) || nowSeconds();
    switch (type) {
      case "state": {
        const state = data.state || data.status;
        if (isTerminal(state)) return this.refresh();
        const change = { state };
        if (state === "in_progress") {
          change.status = "in_progress";
          change.started_at = this.video.started_at || at;
          change.queue_position = null;
        } else if (state === "queued") {
          Object.assign(change, { status: "queued", phase: "queued", step: 0 });
          this.steps = [];
        }
        this.update(change);
        return false;
      }
      case "phase":
        this.update({ phase: data.phase, ...(this.status === "queued" && data.phase !== "queued" ? { status: "in_progress", state: "in_progress" } : {}) });
        return false;
      case "step": {
        const step = Number(data.step);
        const total = Number(data.total ?? data.total_steps ?? this.video.total_steps);
        this.steps.push([at, step]);
        if (data.expert) this.expert = data.expert;
        this.update({ step, total_steps: total, phase: "denoising", status: "in_progress", state: "in_progress" });
        return false;
      }
      case "expert_switch":
        this.expert = data.expert;
        this.render();
        return false;
      case "estimate":
        this.update({ queue_position: data.queue_position, eta_seconds: data.eta_seconds });
        return false;
      case "result":
      case "cancelled":
        return this.refresh();
      case "error":
        if (data.retryable === false || data.terminal) return this.refresh();
        return false;
      default:
        if (data && data.id === this.id && data.object === "video") this.update(data);
        return false;
    }
  }

  tick() {
    if (!isTerminal(this.status)) this.renderTiming();
  }
}

/** The person's videos, newest first: the first page on load, then "load more" with after=. */
export class JobList {
  constructor({ onReuse }) {
    this.onReuse = onReuse;
    this.cards = new Map();
    this.list = document.getElementById("jobs");
    this.more = document.getElementById("load-more");
    this.lastId = null;
    this.more.addEventListener("click", () => this.loadMore());
    setInterval(() => this.cards.forEach((card) => card.tick()), 1000);
  }

  async reload() {
    this.cards.forEach((card) => card.stop());
    this.cards.clear();
    this.list.replaceChildren();
    this.lastId = null;
    await this.loadMore();
  }

  async loadMore() {
    this.more.disabled = true;
    const status = document.getElementById("jobs-status");
    status.textContent = "Loading…";
    try {
      const page = await api.listVideos({ after: this.lastId, limit: PAGE_SIZE });
      for (const video of page.data || []) this.add(video, { atTop: false });
      this.lastId = page.last_id || (page.data?.length ? page.data[page.data.length - 1].id : this.lastId);
      this.more.hidden = !page.has_more;
      status.textContent = "";
    } catch (error) {
      status.textContent = error.status === 401 ? "" : `Could not load your videos: ${error.message}`;
    } finally {
      this.more.disabled = false;
      this.updateEmpty();
    }
  }

  /** Show a video (a new submission at the top, history at the bottom) and follow it. */
  add(video, { atTop, isNew = false }) {
    const known = this.cards.get(video.id);
    if (known) {
      known.update(video);
      return known;
    }
    const card = new JobCard(video, { onReuse: this.onReuse, isNew });
    this.cards.set(video.id, card);
    if (atTop) this.list.prepend(card.element);
    else this.list.append(card.element);
    card.start();
    this.updateEmpty();
    return card;
  }

  updateEmpty() {
    document.getElementById("jobs-empty").hidden = this.cards.size > 0;
  }
}
