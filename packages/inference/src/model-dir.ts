import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  AppError,
  COMPONENTS,
  type ComponentName,
  FAMILIES,
  Family,
  MODEL_INDEX,
  matchLayout,
  PIPELINE_LAYOUTS,
  type PipelineLayout,
  parsePythonJson,
  requiredFiles,
  SCHEDULER_CONFIG,
  type TextEncoderSlot,
  type TokenizerKind,
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
 * The parts of a diffusers transformer config (FluxTransformer2DModel, SD3Transformer2DModel)
 * a pipeline needs, with diffusers' defaults for keys a config leaves out.
 */
export const TransformerConfig = z.looseObject({
  _class_name: z.string().optional(),
  /** Channels of a latent token: Flux 64 (16 × 2 × 2, packed by the pipeline), SD3 16. */
  in_channels: z.number().int().positive(),
  /** Flux 1 (the pipeline packs), SD3 2 (the transformer patchifies [B, 16, h, w] itself). */
  patch_size: z.number().int().positive().default(1),
  /** Width of encoder_hidden_states (T5's d_model); SD3 pads its CLIP embeddings to it. */
  joint_attention_dim: z.number().int().positive(),
  /** Width of pooled_projections: Flux the CLIP pooler, SD3 both CLIP projections joined. */
  pooled_projection_dim: z.number().int().positive(),
  /** Flux dev: the transformer takes a `guidance` input (guidance distillation); schnell does not. */
  guidance_embeds: z.boolean().default(false),
  sample_size: z.number().int().positive().nullish(),
});
export type TransformerConfig = z.infer<typeof TransformerConfig>;

/** One text encoder a pipeline directory has, with the tokenizer that feeds it. */
export interface TextEncoderFiles {
  component: ComponentName;
  /** Absolute path of the encoder's graph. */
  graph: string;
  /** Absolute path of its tokenizer folder. */
  tokenizer: string;
  tokenizerKind: TokenizerKind;
}

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
  /** The text encoders present, in layout order, each with its tokenizer. */
  text: TextEncoderFiles[];
  /** Optional text encoders of the layout this export lacks (SD3 without text_encoder_3: T5 embeddings are zeros). */
  missingText: ComponentName[];
  /** Tokenizer folders, in text-encoder order (`text`'s tokenizers). */
  tokenizers: string[];
  /** Text encoder graphs, in the order their hidden states are joined (`text`'s graphs). */
  textEncoders: string[];
  /** The UNet's or transformer's graph. */
  denoiser: string;
  /** transformer/config.json as read (Flux, SD3); null for a UNet. */
  transformer: TransformerConfig | null;
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

/** SD3's published VAE scaling factor: a bare 16-channel VAE config with it is SD3's, not Flux's. */
const SD3_SCALING = FAMILIES.sd3.scalingFactor;

/**
 * Family from the pipeline / VAE class names a diffusers export carries; a bare VAE (class
 * AutoencoderKL, like every image family's) is told apart by its latent channels and scaling.
 */
export function familyFromClassNames(
  names: Array<string | undefined>,
  latentChannels?: number,
  scalingFactor?: number,
): Family {
  const all = names.filter(Boolean).join(" ");
  if (/HunyuanVideo/i.test(all)) return "hunyuan-video";
  if (/Flux/i.test(all)) return "flux";
  if (/StableDiffusion3|SD3/.test(all)) return "sd3";
  if (/XL/.test(all)) return "sdxl";
  if (latentChannels === 16) return scalingFactor === SD3_SCALING ? "sd3" : "flux";
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
      ...l.text.flatMap((t) => [tokenizerMarker(t.tokenizer, t.tokenizerKind), COMPONENTS[t.encoder].graph]),
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
      : familyFromClassNames(
          [index._class_name, vaeConfig._class_name],
          vaeConfig.latent_channels,
          vaeConfig.scaling_factor,
        ));
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
  const denoiserRaw = (await readConfig(join(dir, denoiser.config))) ?? {};
  const denoiserConfig = DenoiserConfig.parse(denoiserRaw);
  let transformer: TransformerConfig | null = null;
  if (layout.denoiser === "transformer") {
    const parsed = TransformerConfig.safeParse(denoiserRaw);
    if (!parsed.success)
      throw new AppError(
        "internal",
        `${join(dir, denoiser.config)} is not a diffusers transformer config: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}.`,
        { cause: parsed.error },
      );
    transformer = parsed.data;
  }
  const text: TextEncoderFiles[] = [];
  const missingText: ComponentName[] = [];
  for (const t of layout.text) {
    const files = textEncoderFiles(dir, t, present);
    if (files) text.push(files);
    else missingText.push(t.encoder);
  }
  return {
    kind: "pipeline",
    ...common,
    geometry: latentGeometry(family, vaeConfig, layout.patchSize),
    requiredFiles: requiredFiles(layout),
    layout,
    text,
    missingText,
    tokenizers: text.map((t) => t.tokenizer),
    textEncoders: text.map((t) => t.graph),
    denoiser: join(dir, denoiser.graph),
    transformer,
    scheduler,
    sampleSize: denoiserConfig.sample_size ?? null,
    timeCondProjDim: denoiserConfig.time_cond_proj_dim ?? null,
    forceZerosForEmptyPrompt: index.force_zeros_for_empty_prompt === true,
  };
}

/**
 * A layout slot's encoder and tokenizer in `dir`; null for an optional encoder the export lacks.
 *
 * @throws AppError `internal` for an optional encoder with its graph but not its tokenizer (or the
 * reverse): a half-copied export, which silently dropping T5 would hide.
 */
function textEncoderFiles(dir: string, t: TextEncoderSlot, present: Set<string>): TextEncoderFiles | null {
  const graph = COMPONENTS[t.encoder].graph;
  const marker = tokenizerMarker(t.tokenizer, t.tokenizerKind);
  const own = present.has(marker);
  if (t.optional && !present.has(graph) && !own) return null;
  if (t.optional && !(present.has(graph) && own))
    throw new AppError(
      "internal",
      `${dir} has only part of the optional ${t.encoder}: ${present.has(graph) ? marker : graph} not found.`,
    );
  return {
    component: t.encoder,
    graph: join(dir, graph),
    tokenizer: join(dir, own || !t.tokenizerFallback ? t.tokenizer : t.tokenizerFallback),
    tokenizerKind: t.tokenizerKind,
  };
}
