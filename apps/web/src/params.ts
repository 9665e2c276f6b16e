import type { GenerationParams, ImageToImageParams, ModelEntry, TextToImageParams } from "@hybrid/client";
import { SchedulerName } from "@hybrid/protocol";

/** The schedulers a request may name; the form adds "the model's own" (none named). */
export const SCHEDULERS: readonly string[] = SchedulerName.options;

export type GenerationTask = "text-to-image" | "image-to-image";

/**
 * The generation form as the inputs hold it: text. An empty number field means "the model's
 * default" (or, for the seed, "draw one"); anything else is sent as typed, so the API's own
 * validation names a bad value (a width of 100 is the API's 400, not the page's guess).
 */
export interface GenerationForm {
  model: string;
  prompt: string;
  negativePrompt: string;
  width: string;
  height: string;
  steps: string;
  guidance: string;
  /** A scheduler name; empty: the model's own scheduler config. */
  scheduler: string;
  seed: string;
  /** Image-to-image: how far the init image is noised (0–1). */
  strength: string;
  format: "jpeg" | "png";
  /** Ask for a latent preview in each progress event. */
  previews: boolean;
}

/** Models that can run the task (`generation.tasks`), by id. */
export const modelsFor = (models: readonly ModelEntry[], task: GenerationTask): ModelEntry[] =>
  models.filter((m) => m.generation?.tasks.includes(task));

/**
 * The pipeline the generation tabs start on when a worker serves it: the model of the README's
 * examples and of docs/playground.png (alphabetically, `lcm-tiny` would come first).
 */
export const DEFAULT_MODEL = "sd-tiny";

/** The model a generation tab starts on: {@link DEFAULT_MODEL} if served, else the first. */
export const initialModel = (choices: readonly ModelEntry[]): ModelEntry | undefined =>
  choices.find((m) => m.id === DEFAULT_MODEL) ?? choices[0];

/** Models whose VAE both encodes and decodes images (4-D latents): the VAE tab's round trip. */
export const roundTripModels = (models: readonly ModelEntry[]): ModelEntry[] =>
  models.filter(
    (m) => m.operations.includes("encode") && m.operations.includes("decode") && m.latent_rank === 4,
  );

/**
 * The form for a model: its defaults for size, steps, guidance and strength; what the user wrote
 * (prompts, seed, format, previews) is kept from `previous`.
 */
export function formFor(model: ModelEntry | undefined, previous?: GenerationForm): GenerationForm {
  const d = model?.generation?.defaults;
  const str = (n: number | undefined) => (n === undefined ? "" : String(n));
  return {
    model: model?.id ?? "",
    prompt: previous?.prompt ?? "",
    negativePrompt: previous?.negativePrompt ?? "",
    width: str(d?.width),
    height: str(d?.height),
    steps: str(d?.num_inference_steps),
    guidance: str(d?.guidance_scale),
    scheduler: "",
    seed: previous?.seed ?? "",
    strength: str(d?.strength),
    format: previous?.format ?? "png",
    previews: previous?.previews ?? true,
  };
}

/** A number field: empty is "not given" (undefined); anything else is sent as a number. */
function numberOf(text: string): number | undefined {
  const t = text.trim();
  return t === "" ? undefined : Number(t);
}

function common(form: GenerationForm): GenerationParams {
  const p: GenerationParams = {
    format: form.format,
    previews: form.previews,
    width: numberOf(form.width),
    height: numberOf(form.height),
    numInferenceSteps: numberOf(form.steps),
    guidanceScale: numberOf(form.guidance),
    seed: numberOf(form.seed),
  };
  if (form.negativePrompt.trim()) p.negativePrompt = form.negativePrompt;
  if (form.scheduler) p.scheduler = form.scheduler;
  return p;
}

/** The text-to-image request of a form. */
export const textToImageParams = (form: GenerationForm): TextToImageParams => ({
  ...common(form),
  prompt: form.prompt,
});

/** The image-to-image request of a form and its init image's bytes. */
export const imageToImageParams = (form: GenerationForm, image: Uint8Array): ImageToImageParams => ({
  ...common(form),
  prompt: form.prompt,
  image,
  strength: numberOf(form.strength),
});

/** A seed the service accepts (0 to 2^32 - 1), from the platform's random source. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}
