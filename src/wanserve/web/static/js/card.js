// One job's card: renders a video object, follows it live until it ends, and offers what can be
// done with it (cancel, play, download, reuse, run again, link, copy as curl/Python, delete).

import { api, connection, hasKey, mediaUrl } from "./api.js";
import { duration, expertLabel, phaseLabel, restartReason, statusLabel, when } from "./format.js";
import { isTerminal, requestBody, statusOf, videoParams } from "./params.js";
import { curlCommand, pythonCode } from "./snippets.js";
import { follow } from "./sse.js";

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
const DELETE_CONFIRM_MS = 5000;

const nowSeconds = () => Date.now() / 1000;

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `handlers`: onReuse(params), onCreated(video) (a retry), onDeleted(card), onChange(card). */
export class JobCard {
  constructor(video, handlers, { isNew = false } = {}) {
    this.handlers = handlers;
    this.element = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
    this.element.dataset.id = video.id;
    if (isNew) this.element.classList.add("new");
    this.part = (role) => this.element.querySelector(`[data-role="${role}"]`);
    this.action = (name) => this.element.querySelector(`[data-action="${name}"]`);
    this.on("cancel", () => this.cancel());
    this.on("reuse", () => handlers.onReuse(videoParams(this.video)));
    this.on("retry", () => this.retry());
    this.on("delete", () => this.remove());
    this.on("play", () => this.loadVideo({ play: true }));
    this.on("copy-curl", () => this.copy(curlCommand(requestBody(this.video)), "curl"));
    this.on("copy-python", () => this.copy(pythonCode(requestBody(this.video)), "Python"));
    this.action("download").addEventListener("click", (event) => this.download(event));
    this.steps = []; // [unix seconds, step] of this attempt's step events, for the ETA
    this.restart = null; // {attempt, reason, error} of the last attempt that went back to the queue
    this.elapsed = 0;
    this.follower = null;
    this.seenLive = false;
    this.mediaShown = false;
    this.update(video);
  }

  on(action, listener) {
    this.action(action).addEventListener("click", listener);
  }

  get id() {
    return this.video.id;
  }

  get status() {
    return statusOf(this.video);
  }

  update(video) {
    const before = this.video ? this.status : null;
    this.video = { ...this.video, ...video };
    if (this.video.eta_seconds !== undefined && video.eta_seconds !== undefined) {
      this.etaAt = nowSeconds();
    }
    if (!isTerminal(this.status)) this.seenLive = true;
    this.render();
    if (before !== null && before !== this.status) this.handlers.onChange?.(this);
  }

  render() {
    const video = this.video;
    const status = this.status;
    this.element.dataset.status = status;
    this.part("badge").textContent = statusLabel(status);
    this.part("meta").textContent = [video.model, when(video.created_at)].filter(Boolean).join(" · ");
    const prompt = video.prompt || videoParams(video).prompt || "";
    this.part("prompt").textContent = prompt;
    this.element.querySelector("article").setAttribute("aria-label", `${statusLabel(status)}: ${prompt.slice(0, 80)}`);
    const live = !isTerminal(status);
    this.part("live").hidden = !live;
    const cancel = this.action("cancel");
    cancel.hidden = !live;
    cancel.disabled = Boolean(video.cancel_requested);
    cancel.textContent = video.cancel_requested ? "Cancelling…" : "Cancel";
    this.action("retry").hidden = !(status === "failed" || status === "cancelled");
    const link = this.action("link");
    link.href = `/videos/${encodeURIComponent(this.id)}`;
    this.renderNotice();
    if (live) this.renderProgress();
    this.renderOutcome(status);
  }

  /** "Attempt 2 of 3: the previous run stopped because the server restarted." */
  renderNotice() {
    const notice = this.part("notice");
    const attempt = Number(this.video.attempt || 0);
    const max = Number(this.video.max_attempts || 3);
    const restart = this.restart;
    if (!restart || isTerminal(this.status)) {
      notice.hidden = !(attempt > 1 && !isTerminal(this.status));
      notice.textContent = `Attempt ${attempt} of ${max}.`;
      return;
    }
    // Queued again: the next attempt is the one after the stopped one.
    const next = this.status === "queued" ? restart.attempt + 1 : Math.max(attempt, restart.attempt + 1);
    notice.textContent = `Restarted, attempt ${next} of ${max}: the previous run stopped because ${restartReason(restart)}.`;
    notice.hidden = false;
  }

  renderProgress() {
    const video = this.video;
    const step = Number(video.step || 0);
    const total = Number(video.total_steps || videoParams(video).num_inference_steps || 0);
    let phase = this.status === "queued" ? "queued" : video.phase || "starting";
    if (phase === "queued" && this.status === "in_progress") phase = "starting";
    let text = phaseLabel(phase);
    if (phase === "queued" && this.restart) text = "Waiting in the queue to run again";
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

  /**
   * Time since the job was created (it only grows), and the time left; while the server cannot
   * be reached, what the card shows may be out of date, and it says so instead of an ETA.
   */
  renderTiming() {
    const video = this.video;
    this.element.dataset.connection = connection.online ? "ok" : "lost";
    if (!video.created_at) return;
    this.elapsed = Math.max(this.elapsed, nowSeconds() - video.created_at);
    const parts = [`${duration(this.elapsed)} elapsed`];
    if (!connection.online) {
      parts.push("the server cannot be reached: this may be out of date");
    } else {
      const eta = this.eta();
      if (eta !== null) parts.push(eta < 5 ? "a few seconds left" : `about ${duration(eta)} left`);
    }
    this.part("timing").textContent = parts.join(" · ");
  }

  /**
   * Seconds left: measured from this attempt's denoising steps, else the server's estimate;
   * null when there is nothing to go by or the estimate ran out (never "0:00" while work remains).
   */
  eta() {
    const video = this.video;
    const total = Number(video.total_steps || 0);
    let left = null;
    if (this.steps.length >= 2 && total && video.phase === "denoising") {
      const [t0, s0] = this.steps[0];
      const [t1, s1] = this.steps[this.steps.length - 1];
      if (s1 > s0) left = (total - s1) * ((t1 - t0) / (s1 - s0)) - (nowSeconds() - t1);
    } else if (typeof video.eta_seconds === "number" && this.etaAt) {
      left = video.eta_seconds - (nowSeconds() - this.etaAt);
    }
    return left !== null && left >= 1 ? left : null;
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
      // Watched live on this page: the video itself at once. From the history: its poster, and
      // the video only when asked for (a long history loads no video it does not play).
      const shown = this.seenLive ? this.loadVideo() : this.showPoster();
      shown.catch(() => {
        this.mediaShown = false;
        reason.textContent = "The video is finished but could not be loaded; reload to try again.";
        reason.hidden = false;
      });
    }
  }

  aspect(element) {
    const [width, height] = String(this.video.size || "").split("x").map(Number);
    if (width && height) element.style.aspectRatio = `${width} / ${height}`; // no letterbox
  }

  async showPoster() {
    const play = this.action("play");
    const poster = this.part("poster");
    this.aspect(play);
    play.setAttribute("aria-label", `Play the video: ${(this.video.prompt || this.id).slice(0, 80)}`);
    poster.src = await mediaUrl(this.id, "thumbnail");
    play.hidden = false;
    this.part("media").hidden = false;
    this.showDownload();
  }

  async loadVideo({ play = false } = {}) {
    const video = this.part("video");
    this.aspect(video);
    const poster = this.part("poster").src || (await mediaUrl(this.id, "thumbnail").catch(() => null));
    if (poster) video.poster = poster;
    video.src = await mediaUrl(this.id, "video");
    video.setAttribute("aria-label", `Generated video: ${this.video.prompt || this.id}`);
    this.action("play").hidden = true;
    video.hidden = false;
    this.part("media").hidden = false;
    this.showDownload();
    if (play) {
      video.focus();
      video.play().catch(() => {}); // a browser may refuse autoplay: the controls are there
    }
  }

  showDownload() {
    const download = this.action("download");
    download.href = api.contentUrl(this.id, "video");
    download.download = `wanserve-${this.id}.mp4`;
    download.hidden = false;
  }

  /** With an API key the link cannot carry it: fetch the bytes, then save them. */
  async download(event) {
    if (!hasKey()) return;
    event.preventDefault();
    const link = document.createElement("a");
    link.href = await mediaUrl(this.id, "video");
    link.download = `wanserve-${this.id}.mp4`;
    link.click();
  }

  renderParams() {
    const params = videoParams(this.video);
    const rows = [];
    const row = (label, value) => {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      rows.push(dt, dd);
    };
    for (const [name, label] of PARAM_LABELS) {
      const value = params[name];
      if (value !== undefined && value !== "" && value !== null) row(label, String(value));
    }
    const timings = this.video.timings;
    if (timings && typeof timings === "object") {
      const spent = Object.entries(timings)
        .filter(([, seconds]) => typeof seconds === "number" && seconds > 0.05)
        .map(([phase, seconds]) => `${phaseLabel(phase).toLowerCase()} ${seconds.toFixed(1)} s`);
      if (spent.length) row("Time", spent.join(", "));
    }
    if (Number(this.video.attempt) > 1) row("Attempts", String(this.video.attempt));
    this.part("params").replaceChildren(...rows);
  }

  async copy(text, what) {
    const snippet = this.part("snippet");
    snippet.textContent = text;
    snippet.hidden = false;
    const said = this.part("copied");
    try {
      await navigator.clipboard.writeText(text);
      said.textContent = `Copied as ${what}.`;
    } catch {
      said.textContent = `The ${what} code is below: select it and copy it.`;
    }
  }

  /** A new job with the same parameters (the start image, if any, must be chosen again). */
  async retry() {
    if (videoParams(this.video).usedImage) {
      this.handlers.onReuse(videoParams(this.video)); // the form asks for the image again
      return;
    }
    const button = this.action("retry");
    if (this.retrying) return;
    this.retrying = true;
    button.setAttribute("aria-disabled", "true");
    try {
      const video = await api.createVideo(requestBody(this.video), { "Idempotency-Key": idempotencyKey() });
      this.handlers.onCreated(video);
    } catch (error) {
      this.showNotice(`Could not run it again: ${error.message}`);
    } finally {
      this.retrying = false;
      button.removeAttribute("aria-disabled");
    }
  }

  /** Delete takes two presses: the first asks, the second (within 5 s) deletes. */
  async remove() {
    const button = this.action("delete");
    if (!this.confirmingDelete) {
      this.confirmingDelete = true;
      button.textContent = "Press again to delete";
      setTimeout(() => {
        this.confirmingDelete = false;
        button.textContent = "Delete";
      }, DELETE_CONFIRM_MS);
      return;
    }
    try {
      await api.deleteVideo(this.id);
      this.stop();
      this.handlers.onDeleted(this);
    } catch (error) {
      this.showNotice(`Could not delete it: ${error.message}`);
    }
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
      case "state":
        return this.onState(data);
      case "phase":
        this.update({ phase: data.phase, ...(this.status === "queued" && data.phase !== "queued" ? { status: "in_progress", state: "in_progress" } : {}) });
        return false;
      case "step": {
        const step = Number(data.step);
        const total = Number(data.total ?? data.total_steps ?? this.video.total_steps);
        const last = this.steps[this.steps.length - 1];
        if (last && step <= last[1]) this.steps = []; // a new attempt starts again from step 1
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

  onState(data) {
    const state = data.state || data.status;
    if (isTerminal(state)) return this.refresh();
    const change = { state, status: state };
    if (data.attempt !== undefined) change.attempt = data.attempt;
    if (state === "in_progress") {
      change.queue_position = null;
    } else if (state === "queued") {
      Object.assign(change, { phase: "queued", step: 0 });
      this.steps = [];
      this.expert = null;
      // Back in the queue after a run (a restart, a lost worker, a retryable failure).
      if (data.reason || data.error) this.restart = { attempt: Number(data.attempt || 1), reason: data.reason, error: data.error };
    }
    this.update(change);
    return false;
  }

  tick() {
    if (!isTerminal(this.status)) this.renderTiming();
  }
}
