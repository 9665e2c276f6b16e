import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  AppError,
  COMPONENTS,
  FAMILIES,
  Family,
  MODEL_INDEX,
  matchLayout,
  PIPELINE_LAYOUTS,
  type PipelineLayout,
  parsePythonJson,
  requiredFiles,
  SCHEDULER_CONFIG,
  tokenizerMarker,
  VAE_CONFIGS,
  VAE_REQUIRED,
} from "@hybrid/protocol";
import { z } from "zod";

/** A model to serve: an id and a directory in Hugging Face optimum's ONNX layout. */
export interface ModelSource {
  id: string;
  dir: string;
  /** Overrides the family read from the directory. */
  family?: Family;
}

/** The parts of a diffusers VAE config we use. */
export const VaeConfig = z.looseObject({
  _class_name: z.string().optional(),
  latent_channels: z.number().int().positive().optional(),
  block_out_channels: z.array(z.number()).optional(),
  scaling_factor: z.number().optional(),
  shift_factor: z.number().nullable().optional(),
  temporal_compression_ratio: z.number().int().positive().optional(),
  spatial_compression_ratio: z.number().int().positive().optional(),
});
export type VaeConfig = z.infer<typeof VaeConfig>;

const ModelIndex = z.looseObject({
  _class_name: z.string().optional(),
  _hybrid_family: z.string().optional(),
  force_zeros_for_empty_prompt: z.unknown().optional(),
});

const DenoiserConfig = z.looseObject({
  sample_size: z.number().int().positive().nullish(),
  time_cond_proj_dim: z.number().int().positive().nullish(),
});

/**
 * How latents relate to pixels for a model, from its VAE config with diffusers' defaults for
 * the family. Everything that shapes, scales or previews latents reads it from here.
 */
export interface LatentGeometry {
  latentChannels: number;
  /** Pixels per latent along each side (diffusers' `vae_scale_factor`). */
  spatialFactor: number;
  /** Frames per latent frame of a video VAE ((f - 1) × t + 1 frames); null for images. */
  temporalFactor: number | null;
  /** Side of the square latent patches the denoiser takes as tokens (Flux: 2); 1: no packing. */
  patchSize: number;
  /** Latents the denoiser sees = (VAE latents − shift) × scaling. */
  scalingFactor: number;
  shiftFactor: number | null;
}

interface ModelDirCommon {
  dir: string;
  family: Family;
  vaeConfig: VaeConfig;
  geometry: LatentGeometry;
  /** Absolute paths of the VAE's graphs; no encoder means no encode and no image-to-image. */
  vaeDecoder: string;
  vaeEncoder: string | null;
  /** The files (relative to `dir`) this layout requires, all present. */
  requiredFiles: string[];
}

/** A VAE-only export: `vae_decoder/` (and `vae_encoder/`), no denoiser. */
export interface VaeDir extends ModelDirCommon {
  kind: "vae";
}

/**
 * A diffusion pipeline export, resolved: where each graph is and what the configs say. Plain
 * data: it travels to the session threads.
 */
export interface PipelineDir extends ModelDirCommon {
  kind: "pipeline";
  layout: PipelineLayout;
  /** Tokenizer folders, in text-encoder order. */
  tokenizers: string[];
  /** Text encoder graphs, in the order their hidden states are joined. */
  textEncoders: string[];
  /** The UNet's or transformer's graph. */
  denoiser: string;
  /** scheduler/scheduler_config.json as parsed (the scheduler factory checks it). */
  scheduler: Record<string, unknown>;
  /** The denoiser's native latent size (image side = spatialFactor × this), when its config says. */
  sampleSize: number | null;
  /** LCM's guidance embedding width (`timestep_cond`), when the denoiser takes one. */
  timeCondProjDim: number | null;
  /** SDXL: an empty negative prompt means zero embeddings, not the embeddings of "". */
  forceZerosForEmptyPrompt: boolean;
}

/** What {@link detectModelDir} found. */
export type ModelDir = VaeDir | PipelineDir;

const isFile = (p: string) =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

/**
 * Reads a JSON config as Python writes it (bare `NaN`, `Infinity`, `-Infinity` allowed): the one
 * reader of model configs. Undefined when the file does not exist.
 *
 * @throws AppError `internal` when the file is not a JSON object.
 */
export async function readConfig(path: string): Promise<Record<string, unknown> | undefined> {
  if (!(await isFile(path))) return undefined;
  try {
    return z.record(z.string(), z.unknown()).parse(parsePythonJson(await readFile(path, "utf8")));
  } catch (e) {
    throw new AppError("internal", `${path} is not a JSON object.`, { cause: e });
  }
}

/** Family from the pipeline / VAE class names a diffusers export carries. */
export function familyFromClassNames(names: Array<string | undefined>, latentChannels?: number): Family {
  const all = names.filter(Boolean).join(" ");
  if (/HunyuanVideo/i.test(all)) return "hunyuan-video";
  if (/Flux/i.test(all)) return "flux";
  if (/XL/.test(all)) return "sdxl";
  if (latentChannels === 16) return "flux";
  return "sd-v1";
}

/** The latent geometry of a VAE config, with the family's published values where it is silent. */
export function latentGeometry(family: Family, vae: VaeConfig, patchSize = 1): LatentGeometry {
  const d = FAMILIES[family];
  const blocks = vae.block_out_channels?.length;
  return {
    latentChannels: vae.latent_channels ?? d.latentChannels,
    // diffusers: vae_scale_factor = 2 ** (len(block_out_channels) - 1).
    spatialFactor: vae.spatial_compression_ratio ?? (blocks ? 2 ** (blocks - 1) : 8),
    temporalFactor: vae.temporal_compression_ratio ?? d.temporalCompression ?? null,
    patchSize,
    scalingFactor: vae.scaling_factor ?? d.scalingFactor,
    shiftFactor: vae.shift_factor === undefined ? d.shiftFactor : vae.shift_factor,
  };
}

/** Every file whose presence tells the layouts apart. */
const MARKERS = [
  ...new Set([
    ...PIPELINE_LAYOUTS.flatMap((l) => [
      ...requiredFiles(l),
      ...l.text.map((t) => tokenizerMarker(t.tokenizer, t.tokenizerKind)),
    ]),
    ...VAE_REQUIRED,
    COMPONENTS.vae_encoder.graph,
  ]),
];

/**
 * True when `dir` holds a model a worker can serve: a VAE decoder graph (a VAE export or a
 * pipeline, whose VAE serves the VAE endpoints). Cheap: one stat.
 */
export async function isModelDir(dir: string): Promise<boolean> {
  return (await Promise.all(VAE_REQUIRED.map((f) => isFile(join(dir, f))))).every(Boolean);
}

/**
 * Reads a model directory in optimum's ONNX layout: whether it is a VAE export or a diffusion
 * pipeline (and which layout), where its graphs are, its configs (read as Python-style JSON) and
 * its latent geometry. The family comes from `opts.family`, else model_index.json's
 * `_hybrid_family`, else the diffusers class names.
 *
 * @throws AppError `internal` for a directory that is neither, or a pipeline missing a file its
 * layout requires (the message names the files).
 */
export async function detectModelDir(dir: string, opts: { family?: Family } = {}): Promise<ModelDir> {
  const present = new Set<string>();
  await Promise.all(
    MARKERS.map(async (f) => {
      if (await isFile(join(dir, f))) present.add(f);
    }),
  );
  const match = matchLayout((f) => present.has(f));
  if (match.kind === "none") {
    const denoiser = PIPELINE_LAYOUTS.some((l) => present.has(COMPONENTS[l.denoiser].graph));
    throw new AppError(
      "internal",
      denoiser
        ? `${dir} is an incomplete ${match.closest.name} pipeline: ${match.missing.join(", ")} not found (expected optimum's ONNX layout).`
        : `${dir} is neither a VAE nor a diffusion pipeline: ${VAE_REQUIRED.join(", ")} not found (expected optimum's ONNX layout).`,
    );
  }
  let vaeRaw: Record<string, unknown> | undefined;
  for (const f of VAE_CONFIGS) {
    vaeRaw = await readConfig(join(dir, f));
    if (vaeRaw) break;
  }
  const vaeConfig = VaeConfig.parse(vaeRaw ?? {});
  const index = ModelIndex.parse((await readConfig(join(dir, MODEL_INDEX))) ?? {});
  const declared = Family.safeParse(index._hybrid_family);
  const family =
    opts.family ??
    (declared.success
      ? declared.data
      : familyFromClassNames([index._class_name, vaeConfig._class_name], vaeConfig.latent_channels));
  const encoder = COMPONENTS.vae_encoder.graph;
  const common = {
    dir,
    family,
    vaeConfig,
    vaeDecoder: join(dir, COMPONENTS.vae_decoder.graph),
    vaeEncoder: present.has(encoder) ? join(dir, encoder) : null,
  };
  if (match.kind !== "pipeline")
    return {
      kind: "vae",
      ...common,
      geometry: latentGeometry(family, vaeConfig),
      requiredFiles: [...VAE_REQUIRED],
    };

  const { layout } = match;
  const scheduler = await readConfig(join(dir, SCHEDULER_CONFIG));
  if (!scheduler) throw new AppError("internal", `${join(dir, SCHEDULER_CONFIG)} not found.`);
  const denoiser = COMPONENTS[layout.denoiser];
  const denoiserConfig = DenoiserConfig.parse((await readConfig(join(dir, denoiser.config))) ?? {});
  return {
    kind: "pipeline",
    ...common,
    geometry: latentGeometry(family, vaeConfig, layout.patchSize),
    requiredFiles: requiredFiles(layout),
    layout,
    tokenizers: layout.text.map((t) => {
      const own = present.has(tokenizerMarker(t.tokenizer, t.tokenizerKind));
      return join(dir, own || !t.tokenizerFallback ? t.tokenizer : t.tokenizerFallback);
    }),
    textEncoders: layout.text.map((t) => join(dir, COMPONENTS[t.encoder].graph)),
    denoiser: join(dir, denoiser.graph),
    scheduler,
    sampleSize: denoiserConfig.sample_size ?? null,
    timeCondProjDim: denoiserConfig.time_cond_proj_dim ?? null,
    forceZerosForEmptyPrompt: index.force_zeros_for_empty_prompt === true,
  };
}
