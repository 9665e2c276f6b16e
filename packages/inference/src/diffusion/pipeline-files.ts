import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "@hybrid/protocol";
import { z } from "zod";
import type { ModelSource } from "../registry.ts";

/**
 * A Stable Diffusion-family pipeline directory in Hugging Face optimum's ONNX layout, resolved:
 * where each graph is and what the configs say. Plain data: it travels to the session threads.
 */
export interface PipelineFiles {
  id: string;
  dir: string;
  /** `sdxl` when a second text encoder (and its added conditioning) is present. */
  variant: "sd" | "sdxl";
  /** tokenizer/ (and tokenizer_2/) directories, in text-encoder order. */
  tokenizers: string[];
  /** text_encoder/ (and text_encoder_2/) graphs. */
  textEncoders: string[];
  unet: string;
  vaeDecoder: string;
  vaeEncoder: string | null;
  /** scheduler/scheduler_config.json, as parsed JSON (the scheduler factory checks it). */
  scheduler: unknown;
  scalingFactor: number;
  shiftFactor: number | null;
  /** The UNet's native latent size (image size = 8× this), when the config says. */
  sampleSize: number | null;
  /** LCM's guidance embedding width (`timestep_cond`), when the UNet takes one. */
  timeCondProjDim: number | null;
  /** SDXL: an empty negative prompt means zero embeddings, not the embeddings of "". */
  forceZerosForEmptyPrompt: boolean;
}

const isFile = (p: string) =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  if (!(await isFile(path))) return undefined;
  try {
    return z.record(z.string(), z.unknown()).parse(parsePythonJson(await readFile(path, "utf8")));
  } catch (e) {
    throw new AppError("internal", `${path} is not a JSON object.`, { cause: e });
  }
}

/**
 * JSON as Python's json module writes it: diffusers configs may hold bare `Infinity`, `-Infinity`
 * or `NaN` (DPM-Solver's `lambda_min_clipped`), which JSON.parse refuses.
 */
export function parsePythonJson(text: string): unknown {
  const marked = text.replace(/([:[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g, '$1"\\u0000$2"');
  return JSON.parse(marked, (_k, v) =>
    typeof v === "string" && v.startsWith("\u0000") ? Number(v.slice(1)) : v,
  );
}

const UnetConfig = z.looseObject({
  sample_size: z.number().int().positive().nullish(),
  time_cond_proj_dim: z.number().int().positive().nullish(),
});
const VaeConfig = z.looseObject({
  scaling_factor: z.number().nullish(),
  shift_factor: z.number().nullish(),
});

/**
 * Reads a pipeline directory: `unet/model.onnx`, `text_encoder/model.onnx`, `tokenizer/`,
 * `vae_decoder/model.onnx` and `scheduler/scheduler_config.json` are required; SDXL adds
 * `text_encoder_2/` and `tokenizer_2/`; `vae_encoder/` makes image-to-image possible.
 * Returns null for a directory without a UNet (a VAE-only model).
 */
export async function resolvePipelineDir(src: ModelSource): Promise<PipelineFiles | null> {
  const unet = join(src.dir, "unet", "model.onnx");
  if (!(await isFile(unet))) return null;
  const need = async (rel: string) => {
    const p = join(src.dir, rel);
    if (!(await isFile(p)))
      throw new AppError("internal", `Model ${src.id}: ${p} not found (expected optimum's ONNX layout).`);
    return p;
  };
  const textEncoders = [await need("text_encoder/model.onnx")];
  const tokenizers = [join(src.dir, "tokenizer")];
  await need("tokenizer/vocab.json");
  const second = join(src.dir, "text_encoder_2", "model.onnx");
  const sdxl = await isFile(second);
  if (sdxl) {
    textEncoders.push(second);
    tokenizers.push(
      (await isFile(join(src.dir, "tokenizer_2", "vocab.json")))
        ? join(src.dir, "tokenizer_2")
        : tokenizers[0]!,
    );
  }
  const vaeDecoder = await need("vae_decoder/model.onnx");
  const vaeEncoderPath = join(src.dir, "vae_encoder", "model.onnx");
  const scheduler = await readJson(join(src.dir, "scheduler", "scheduler_config.json"));
  if (!scheduler)
    throw new AppError("internal", `Model ${src.id}: scheduler/scheduler_config.json not found.`);
  const index = (await readJson(join(src.dir, "model_index.json"))) ?? {};
  const unetConfig = UnetConfig.parse((await readJson(join(src.dir, "unet", "config.json"))) ?? {});
  const vae = VaeConfig.parse(
    (await readJson(join(src.dir, "vae_decoder", "config.json"))) ??
      (await readJson(join(src.dir, "vae", "config.json"))) ??
      {},
  );
  return {
    id: src.id,
    dir: src.dir,
    variant: sdxl ? "sdxl" : "sd",
    tokenizers,
    textEncoders,
    unet,
    vaeDecoder,
    vaeEncoder: (await isFile(vaeEncoderPath)) ? vaeEncoderPath : null,
    scheduler,
    scalingFactor: vae.scaling_factor ?? (sdxl ? 0.13025 : 0.18215),
    shiftFactor: vae.shift_factor ?? null,
    sampleSize: unetConfig.sample_size ?? null,
    timeCondProjDim: unetConfig.time_cond_proj_dim ?? null,
    forceZerosForEmptyPrompt: index.force_zeros_for_empty_prompt === true,
  };
}
