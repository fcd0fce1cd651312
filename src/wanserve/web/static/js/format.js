// Words and numbers a person reads: phases, states, durations, dates.

const PHASES = {
  queued: "Waiting in the queue",
  starting: "Starting the engine",
  waiting_for_gpus: "Waiting for GPUs",
  pulling_image: "Pulling the container image",
  loading: "Loading the model",
  encoding_text: "Encoding the prompt",
  denoising: "Denoising",
  decoding: "Decoding frames",
  encoding_video: "Encoding the video",
  writing: "Writing files",
  uploading: "Uploading",
  done: "Finishing",
};

const STATUSES = {
  queued: "Queued",
  in_progress: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

const POOL_STATES = {
  cold: "Cold",
  scaling_up: "Scaling up",
  warm: "Warm",
  scaling_down: "Scaling down",
  running: "Running",
  unavailable: "Unavailable",
};

export function poolStateLabel(state) {
  return POOL_STATES[state] || state.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
}

export function phaseLabel(phase) {
  if (!phase) return "";
  return PHASES[phase] || phase.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
}

export function statusLabel(status) {
  return STATUSES[status] || status;
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function duration(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** A span of time in round words: 12 -> "12 s", 330 -> "5 min", 7200 -> "2 h", 2 days.
 * Never under 1 s: the server's clock and this browser's may differ a little. */
export function roughly(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  const days = Math.floor(s / 86400);
  return `${days} ${days === 1 ? "day" : "days"}`;
}

export function when(unixSeconds) {
  if (!unixSeconds) return "";
  const date = new Date(unixSeconds * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

const RESTART_REASONS = {
  shutdown: "the server restarted",
  worker_lost: "its worker stopped",
  lost_by_queue: "the queue lost it",
};

/** Why an attempt ended and the job went back to the queue, in words. */
export function restartReason({ reason, error }) {
  if (error?.message) return `the last run failed (${error.message})`;
  return RESTART_REASONS[reason] || (reason ? reason.replaceAll("_", " ") : "it was handed back");
}

/** 1536 -> "1.5 KB", 12015941 -> "11.5 MB" (the API words sizes the same way). */
export function bytes(size) {
  for (const [unit, scale] of [["MB", 2 ** 20], ["KB", 2 ** 10]]) {
    if (size >= scale) return `${(size / scale).toFixed(1).replace(/\.0$/, "")} ${unit}`;
  }
  return `${size} bytes`;
}

export function expertLabel(expert) {
  if (expert === "high_noise") return "high-noise expert";
  if (expert === "low_noise") return "low-noise expert";
  return expert || "";
}
