// Model cards from GET /v1/models, and the choices each one allows.

const DEFAULT_RANGES = {
  num_frames: [5, 161],
  num_inference_steps: [1, 100],
  guidance_scale: [0, 20],
  seed: [0, 2 ** 32 - 1],
  prompt_chars: [1, 2000],
};

/**
 * A card from GET /v1/models in the shape the form uses. The server sends OpenAI's model object
 * plus `tasks`, `requires_image`, `default_size`, `sizes` (null: any size by `size_rule`),
 * `size_rule` {stride, min_side, max_side}, `defaults` {...} and `ranges` {field: [low, high]}.
 */
export function normalizeModel(raw) {
  const defaults = raw.defaults || {};
  const ranges = { ...DEFAULT_RANGES, ...(raw.ranges || {}) };
  const rule = raw.size_rule || {};
  const tasks = raw.tasks || ["t2v"];
  const twoExperts = "guidance_scale_2" in (raw.ranges || {}) || defaults.guidance_scale_2 != null;
  return {
    id: raw.id,
    description: raw.description || "",
    acceptsImage: tasks.includes("i2v"),
    requiresImage: raw.requires_image ?? !tasks.includes("t2v"),
    sizes: Array.isArray(raw.sizes) && raw.sizes.length ? raw.sizes : null,
    defaultSize: raw.default_size || defaults.size || "",
    sizeStride: Number(rule.stride || 16),
    minSide: Number(rule.min_side || 256),
    maxSide: Number(rule.max_side || 1280),
    defaultFrames: Number(defaults.num_frames || 81),
    minFrames: Number(ranges.num_frames[0]),
    maxFrames: Number(ranges.num_frames[1]),
    fps: Number(defaults.fps || 16),
    defaultSteps: Number(defaults.num_inference_steps || 40),
    maxSteps: Number(ranges.num_inference_steps[1]),
    guidance: Number(defaults.guidance_scale ?? 5),
    guidance2: twoExperts ? Number(defaults.guidance_scale_2 ?? defaults.guidance_scale ?? 3) : null,
    guidanceMin: Number(ranges.guidance_scale[0]),
    guidanceMax: Number(ranges.guidance_scale[1]),
    maxPromptChars: Number(ranges.prompt_chars[1]),
    maxSeed: Number(ranges.seed[1]),
    negativePrompt: defaults.negative_prompt || "",
  };
}

function parseSize(size) {
  const match = /^(\d+)\s*[x*×]\s*(\d+)$/.exec(String(size).trim());
  return match ? [Number(match[1]), Number(match[2])] : null;
}

function roundTo(value, stride) {
  return Math.round(value / stride) * stride;
}

/**
 * The sizes to offer: the card's list when it has one; otherwise common aspect ratios at a few
 * scales, each side a multiple of the stride within the bounds (what the server accepts).
 */
export function sizeChoices(model) {
  if (model.sizes && model.sizes.length) return [...model.sizes];
  const { sizeStride: stride, minSide: low, maxSide: high } = model;
  const fits = ([w, h]) => w >= low && w <= high && h >= low && h <= high && !(w % stride) && !(h % stride);
  const found = new Map();
  const add = (pair) => {
    if (fits(pair)) found.set(`${pair[0]}x${pair[1]}`, pair);
  };
  const aspects = [[1, 1], [16, 9], [9, 16], [4, 3], [3, 4]];
  const sides = [...new Set([low, 2 * low, 4 * low, 8 * low, high].map((s) => roundTo(s, stride)))];
  for (const long of sides) {
    for (const [a, b] of aspects) {
      const w = a >= b ? long : roundTo((long * a) / b, stride);
      const h = a >= b ? roundTo((long * b) / a, stride) : long;
      add([w, h]);
    }
  }
  const fallback = parseSize(model.defaultSize);
  if (fallback) add(fallback);
  return [...found.entries()]
    .sort(([, p], [, q]) => p[0] * p[1] - q[0] * q[1] || q[0] - p[0])
    .map(([size]) => size);
}

/** Frame counts the model takes: 4n+1 from its minimum to its maximum. */
export function frameChoices(model) {
  const choices = [];
  const start = model.minFrames + ((1 - (model.minFrames % 4) + 4) % 4);
  for (let frames = start; frames <= model.maxFrames; frames += 4) choices.push(frames);
  if (!choices.includes(model.defaultFrames) && model.defaultFrames % 4 === 1) {
    choices.push(model.defaultFrames);
    choices.sort((a, b) => a - b);
  }
  return choices;
}

export function sizeLabel(size) {
  const pair = parseSize(size);
  if (!pair) return size;
  const [w, h] = pair;
  const shape = w === h ? "square" : w > h ? "landscape" : "portrait";
  return `${w}×${h} ${shape}`;
}

export function framesLabel(frames, fps) {
  return `${(frames / fps).toFixed(1)} s (${frames} frames)`;
}
