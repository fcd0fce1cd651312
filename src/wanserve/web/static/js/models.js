// Model cards from GET /v1/models, and the choices each one allows.

const MIN_FRAMES = 5;
const DEFAULTS = { maxPromptChars: 2000, maxSeed: 2 ** 32 - 1, guidanceMin: 0, guidanceMax: 20 };

/** The first defined value among `names`, looked up on the card and its nested groups. */
function field(raw, ...names) {
  const scopes = [raw, raw.wanserve, raw.defaults, raw.limits, raw.capabilities].filter(
    (scope) => scope && typeof scope === "object",
  );
  for (const name of names) {
    for (const scope of scopes) {
      if (scope[name] !== undefined && scope[name] !== null) return scope[name];
    }
  }
  return undefined;
}

function hasField(raw, name) {
  return [raw, raw.wanserve, raw.defaults].some((scope) => scope && name in scope);
}

/** A card in the shape the form uses, whatever nesting the server chose. */
export function normalizeModel(raw) {
  const tasks = field(raw, "tasks") || [];
  const guidance2 = field(raw, "guidance_scale_2", "default_guidance_scale_2");
  const twoExperts = field(raw, "has_two_experts") ?? (guidance2 !== undefined);
  const range = field(raw, "guidance_range") || [DEFAULTS.guidanceMin, DEFAULTS.guidanceMax];
  return {
    id: raw.id,
    description: field(raw, "description") || "",
    acceptsImage: field(raw, "accepts_image") ?? tasks.includes("i2v"),
    requiresImage: field(raw, "requires_image") ?? (tasks.length > 0 && !tasks.includes("t2v")),
    sizes: field(raw, "sizes") || null,
    defaultSize: field(raw, "default_size", "size") || "",
    sizeStride: Number(field(raw, "size_stride") || 16),
    minSide: Number(field(raw, "min_side") || 256),
    maxSide: Number(field(raw, "max_side") || 1280),
    defaultFrames: Number(field(raw, "default_frames", "num_frames") || 81),
    maxFrames: Number(field(raw, "max_frames") || 161),
    minFrames: Number(field(raw, "min_frames") || MIN_FRAMES),
    fps: Number(field(raw, "fps", "default_fps") || 16),
    defaultSteps: Number(field(raw, "default_steps", "num_inference_steps") || 40),
    maxSteps: Number(field(raw, "max_steps") || 100),
    guidance: Number(field(raw, "guidance_scale", "default_guidance_scale") ?? 5),
    guidance2: twoExperts ? Number(guidance2 ?? field(raw, "guidance_scale") ?? 3) : null,
    guidanceMin: Number(range[0]),
    guidanceMax: Number(range[1]),
    maxPromptChars: Number(field(raw, "max_prompt_chars") || DEFAULTS.maxPromptChars),
    maxSeed: Number(field(raw, "max_seed") || DEFAULTS.maxSeed),
    hasSizeList: hasField(raw, "sizes") && Array.isArray(field(raw, "sizes")),
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
