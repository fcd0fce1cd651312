// The create form: model choices, defaults, image picker, submit, field-level errors.

import { api } from "./api.js";
import { bytes } from "./format.js";
import { frameChoices, framesLabel, normalizeModel, sizeChoices, sizeLabel } from "./models.js";

const LAST_MODEL = "wanserve.lastModel";
const NUMBER_FIELDS = ["num_frames", "num_inference_steps", "guidance_scale", "guidance_scale_2", "seed"];
// Server field names that belong to another control on this form.
const FIELD_ALIASES = { image: "input_reference", seconds: "num_frames", width: "size", height: "size" };

const $ = (id) => document.getElementById(id);

function option(value, label, selected = false) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  element.selected = selected;
  return element;
}

function randomSeed(max) {
  const word = new Uint32Array(1);
  crypto.getRandomValues(word);
  return word[0] % (Math.min(max, 2 ** 32 - 1) + 1);
}

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A numeric field as a number when it is one, the raw text otherwise (the server names it). */
function numberOrText(text) {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : trimmed;
}

export class CreateForm {
  constructor({ onCreated }) {
    this.form = $("create-form");
    this.onCreated = onCreated;
    this.models = new Map();
    this.imageUrl = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    // Ctrl+Enter (Cmd+Enter on a Mac) in a text field submits, as in most editors and chats.
    this.form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.matches("textarea, input")) {
        event.preventDefault();
        this.submit();
      }
    });
    $("model").addEventListener("change", () => this.applyModel($("model").value));
    $("prompt").addEventListener("input", () => this.updateCounter());
    $("seed-random").addEventListener("click", () => {
      $("seed").value = String(randomSeed(this.model?.maxSeed ?? 2 ** 32 - 1));
      this.clearFieldError("seed");
    });
    $("reset-defaults").addEventListener("click", () => this.applyModel($("model").value));
    $("input_reference").addEventListener("change", () => this.showPreview());
    $("image-clear").addEventListener("click", () => {
      $("input_reference").value = "";
      this.showPreview();
    });
    this.form.addEventListener("input", (event) => {
      const field = event.target.closest(".field")?.dataset.field;
      if (field) this.clearFieldError(field);
    });
  }

  get model() {
    return this.models.get($("model").value);
  }

  async loadModels() {
    const body = await api.listModels();
    // GET /v1/models lists the models this server serves; skip any marked unavailable anyway.
    const served = (body.data || []).filter((card) => card.available !== false);
    const cards = served.map(normalizeModel);
    this.imageUploads = new Map(served.map((card) => [card.id, card.image_upload || null]));
    const raw = new Map(served.map((card) => [card.id, card]));
    this.models = new Map(cards.map((card) => [card.id, card]));
    const select = $("model");
    select.replaceChildren();
    for (const card of cards) select.append(option(card.id, card.id));
    select.disabled = cards.length === 0;
    $("submit").disabled = cards.length === 0;
    const preferred = this.preferredModel(cards, raw);
    if (preferred) {
      select.value = preferred;
      this.applyModel(preferred);
    }
  }

  preferredModel(cards, raw) {
    let last = "";
    try {
      last = localStorage.getItem(LAST_MODEL) || "";
    } catch {
      // no storage: use the server's choice
    }
    if (cards.some((card) => card.id === last)) return last;
    // The server's default model (the one a request without `model` gets) is flagged `default`.
    const flagged = cards.find((card) => raw.get(card.id).default === true);
    return (flagged || cards[0])?.id;
  }

  /** Offer `modelId`'s valid choices, preselecting its defaults. */
  applyModel(modelId) {
    const model = this.models.get(modelId);
    if (!model) return;
    this.clearErrors();
    $("model-hint").textContent = model.description;

    const sizes = sizeChoices(model);
    $("size").replaceChildren(...sizes.map((s) => option(s, sizeLabel(s), s === model.defaultSize)));
    const frames = frameChoices(model);
    $("num_frames").replaceChildren(
      ...frames.map((f) => option(String(f), framesLabel(f, model.fps), f === model.defaultFrames)),
    );

    const steps = $("num_inference_steps");
    steps.max = String(model.maxSteps);
    steps.value = String(model.defaultSteps);
    $("num_inference_steps-hint").textContent = `1 to ${model.maxSteps}; more is slower and finer.`;

    for (const id of ["guidance_scale", "guidance_scale_2"]) {
      $(id).min = String(model.guidanceMin);
      $(id).max = String(model.guidanceMax);
    }
    $("guidance_scale").value = String(model.guidance);
    const twoExperts = model.guidance2 !== null;
    $("guidance_scale-label").textContent = twoExperts ? "Guidance, high-noise expert" : "Guidance";
    $("guidance2-field").hidden = !twoExperts;
    $("guidance_scale_2").value = twoExperts ? String(model.guidance2) : "";

    $("seed").max = String(model.maxSeed);
    $("seed").value = "";
    $("negative_prompt").value = model.negativePrompt;

    $("image-field").hidden = !model.acceptsImage;
    $("input_reference").required = model.requiresImage;
    $("image-required").textContent = model.requiresImage ? "(required)" : "(optional)";
    if (!model.acceptsImage) {
      $("input_reference").value = "";
      this.showPreview();
    }
    this.updateCounter();
  }

  /** Fill the form from a past job's parameters ("use these settings again"). */
  fill(params) {
    if (params.model && this.models.has(params.model)) {
      $("model").value = params.model;
      this.applyModel(params.model);
    }
    $("prompt").value = params.prompt ?? "";
    $("negative_prompt").value = params.negative_prompt ?? "";
    const setSelect = (id, value, label) => {
      if (value === undefined) return;
      const select = $(id);
      const text = String(value);
      if (![...select.options].some((o) => o.value === text)) select.append(option(text, label(text)));
      select.value = text;
    };
    setSelect("size", params.size, sizeLabel);
    setSelect("num_frames", params.num_frames, (f) => framesLabel(Number(f), this.model.fps));
    for (const id of ["num_inference_steps", "guidance_scale", "seed"]) {
      if (params[id] !== undefined) $(id).value = String(params[id]);
    }
    if (params.guidance_scale_2 !== undefined && !$("guidance2-field").hidden) {
      $("guidance_scale_2").value = String(params.guidance_scale_2);
    }
    const imageHint = $("input_reference-hint");
    imageHint.textContent = params.usedImage
      ? "That video started from an image: choose it again here."
      : "The video starts from this picture.";
    this.updateCounter();
    this.form.scrollIntoView({ behavior: "smooth", block: "start" });
    $("prompt").focus({ preventScroll: true });
  }

  updateCounter() {
    const length = $("prompt").value.length;
    const max = this.model?.maxPromptChars ?? 2000;
    const counter = $("prompt-count");
    counter.textContent = `${length} / ${max} characters`;
    counter.classList.toggle("over", length > max);
  }

  /** The chosen file's type and size against what the server takes (its image_upload), before
   * anything is sent; null when fine, else the rule and what was given. */
  imageProblem(file) {
    const rule = this.imageUploads?.get(this.model?.id);
    if (!rule || !file) return null;
    if (rule.types?.length && !rule.types.includes(file.type)) {
      return { rule: "Must be a PNG, JPEG or WebP image", value: `${file.name}${file.type ? `, ${file.type}` : ""}` };
    }
    if (file.size > rule.max_bytes) return { rule: `Must be at most ${bytes(rule.max_bytes)}`, value: bytes(file.size) };
    return null;
  }

  showPreview() {
    const file = $("input_reference").files[0];
    if (this.imageUrl) URL.revokeObjectURL(this.imageUrl);
    this.imageUrl = file ? URL.createObjectURL(file) : null;
    $("image-preview").hidden = !file;
    if (file) $("image-preview-img").src = this.imageUrl;
    else $("image-preview-img").removeAttribute("src");
    this.clearFieldError("input_reference");
    const problem = this.imageProblem(file);
    if (problem) this.showFieldError("input_reference", problem.rule, problem.value);
  }

  /** The request body: JSON fields, or multipart when there is an image to upload. */
  body() {
    const model = this.model;
    const fields = {
      model: model.id,
      prompt: $("prompt").value,
      size: $("size").value,
    };
    const negative = $("negative_prompt").value;
    if (negative.trim()) fields.negative_prompt = negative;
    for (const id of NUMBER_FIELDS) {
      if (id === "guidance_scale_2" && model.guidance2 === null) continue;
      const value = numberOrText($(id).value);
      if (value !== undefined) fields[id] = value;
    }
    const file = model.acceptsImage ? $("input_reference").files[0] : undefined;
    if (!file) return fields;
    const data = new FormData();
    for (const [name, value] of Object.entries(fields)) data.append(name, String(value));
    data.append("input_reference", file, file.name);
    return data;
  }

  async submit() {
    const button = $("submit");
    if (button.disabled || this.submitting || !this.model) return;
    this.clearErrors();
    const file = this.model.acceptsImage ? $("input_reference").files[0] : undefined;
    if (this.model.requiresImage && !file) {
      this.showFieldError("input_reference", `${this.model.id} needs a start image: choose one.`);
      $("input_reference").focus();
      return;
    }
    const problem = this.imageProblem(file);
    if (problem) {
      this.showFieldError("input_reference", problem.rule, problem.value);
      $("input_reference").focus();
      return;
    }
    // aria-disabled, not disabled: a disabled button loses the focus (to the page's body), and a
    // keyboard user would have to find their way back.
    this.submitting = true;
    button.setAttribute("aria-disabled", "true");
    button.textContent = "Submitting…";
    try {
      const video = await api.createVideo(this.body(), { "Idempotency-Key": idempotencyKey() });
      try {
        localStorage.setItem(LAST_MODEL, this.model.id);
      } catch {
        // not remembered; harmless
      }
      this.onCreated(video);
    } catch (error) {
      this.showApiError(error);
    } finally {
      this.submitting = false;
      button.removeAttribute("aria-disabled");
      button.textContent = "Generate video";
    }
  }

  showApiError(error) {
    const shown = new Set();
    for (const item of error.fieldErrors || []) {
      const name = this.fieldName(item.field);
      if (name && !shown.has(name)) {
        this.showFieldError(name, item.rule ? `${item.rule}.` : error.message, item.value);
        shown.add(name);
      }
    }
    if (shown.size === 0) {
      if (error.status === 401) return; // the access panel explains it
      $("form-error").textContent = error.message;
      $("form-error").hidden = false;
      return;
    }
    this.form.querySelector(`[data-field="${[...shown][0]}"] [name]`)?.focus();
  }

  /** The form field a server error names ("body.seed", "seed", "image" ...), if it has one. */
  fieldName(field) {
    if (!field) return null;
    const last = String(field).split(/[.[\]/]/).filter(Boolean).pop();
    const name = FIELD_ALIASES[last] || last;
    const wrapper = this.form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    return wrapper && !wrapper.hidden ? name : null;
  }

  showFieldError(name, message, value) {
    const box = $(`${name}-error`);
    const quiet = value === undefined || value === null || !String(value).trim() || String(value).length > 40;
    const shownValue = quiet ? "" : ` (you gave ${value})`;
    const text = `${message.replace(/\.$/, "")}${shownValue}.`;
    box.textContent = text.charAt(0).toUpperCase() + text.slice(1);
    box.hidden = false;
    const control = this.form.querySelector(`[data-field="${name}"] [name]`);
    control?.setAttribute("aria-invalid", "true");
    const advanced = this.form.querySelector("details.advanced");
    if (advanced.contains(box)) advanced.open = true;
  }

  clearFieldError(name) {
    const box = $(`${name}-error`);
    if (box) {
      box.hidden = true;
      box.textContent = "";
    }
    this.form.querySelector(`[data-field="${name}"] [name]`)?.removeAttribute("aria-invalid");
  }

  clearErrors() {
    for (const wrapper of this.form.querySelectorAll(".field[data-field]")) {
      this.clearFieldError(wrapper.dataset.field);
    }
    $("form-error").hidden = true;
  }
}
