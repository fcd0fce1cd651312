// What a video object says about itself: its wanserve state and its generation parameters.

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

/** queued | in_progress | completed | failed | cancelled (cancelled is "failed" for the SDK). */
export function statusOf(video) {
  const own = video.state ?? video.wanserve_status;
  if (own === "cancelled") return "cancelled";
  if (video.status === "failed" && video.error && video.error.code === "cancelled") return "cancelled";
  return video.status || own;
}

function lookup(video, name) {
  for (const scope of [video.parameters, video.spec, video.request, video]) {
    if (scope && typeof scope === "object" && scope[name] !== undefined && scope[name] !== null) {
      return scope[name];
    }
  }
  return undefined;
}

/**
 * The POST /v1/videos body that makes `video` again (JSON; its start image, if it had one, is
 * not part of it: `videoParams(video).usedImage` says so).
 */
export function requestBody(video) {
  const params = videoParams(video);
  const body = {};
  for (const name of [
    "model", "prompt", "negative_prompt", "size", "num_frames", "num_inference_steps",
    "guidance_scale", "guidance_scale_2", "shift", "seed",
  ]) {
    if (params[name] !== undefined && params[name] !== null && params[name] !== "") body[name] = params[name];
  }
  const loras = video.parameters?.loras;
  if (Array.isArray(loras) && loras.length) body.loras = loras.map(({ name, scale }) => ({ name, scale }));
  return body;
}

/** The parameters that reproduce `video`, in the request's field names. */
export function videoParams(video) {
  const params = {};
  for (const name of [
    "model", "prompt", "negative_prompt", "size", "num_frames", "num_inference_steps",
    "guidance_scale", "guidance_scale_2", "shift", "seed", "fps", "seconds",
  ]) {
    const value = lookup(video, name);
    if (value !== undefined) params[name] = value;
  }
  if (!params.size) {
    const width = lookup(video, "width");
    const height = lookup(video, "height");
    if (width && height) params.size = `${width}x${height}`;
  }
  const task = lookup(video, "task");
  params.usedImage = task === "i2v" || Boolean(lookup(video, "has_image"));
  return params;
}
