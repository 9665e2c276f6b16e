import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { COMPONENTS, type Family, MODEL_INDEX } from "@hybrid/protocol";
import { generatedWith, json, writeAtomic } from "./files.ts";
import { buildDecoder, buildEncoder, FAMILY_SPECS, vaeConfig } from "./vae-models.ts";

export interface GenerateVaeOptions {
  family: Family;
  /** Model directory to write. */
  outDir: string;
  /**
   * "tiny": a few small convs (fast, for tests); "taesd": the architecture of the real TAESD
   * decoder (64 channels) with random weights, for benchmarks with realistic compute. Default "tiny".
   */
  arch?: "tiny" | "taesd";
  /**
   * Which output the encoder exports: optimum's older "latent_sample" [B,C,h,w] or newer
   * "latent_parameters" [B,2C,h,w] (mean then logvar along channels). Default "latent_parameters".
   */
  encoderOutput?: "latent_sample" | "latent_parameters";
  /**
   * dtype of the graph inputs/outputs. "float16" = fp16 I/O with Cast nodes to/from float32 inside
   * (CPU EP fp16 conv kernels are not reliable). Default "float32".
   */
  ioDtype?: "float32" | "float16";
  /** Weight seed; the same options give byte-identical files. Default 0. */
  seed?: number;
  /** Default true for image families, false for hunyuan-video (no encoder is generated for video). */
  withEncoder?: boolean;
}

/**
 * Bumped whenever the generated graphs change, so that generateDefaultModels regenerates models
 * written by an older generator instead of skipping them.
 */
const GENERATOR_VERSION = 1;

type Resolved = Required<Omit<GenerateVaeOptions, "outDir">>;

function resolve(opts: GenerateVaeOptions): Resolved {
  const video = FAMILY_SPECS[opts.family].video;
  const withEncoder = opts.withEncoder ?? !video;
  if (video && withEncoder) throw new Error(`generateVaeModel: no encoder is generated for ${opts.family}`);
  return {
    family: opts.family,
    arch: opts.arch ?? "tiny",
    encoderOutput: opts.encoderOutput ?? "latent_parameters",
    ioDtype: opts.ioDtype ?? "float32",
    seed: opts.seed ?? 0,
    withEncoder,
  };
}

/** The fingerprint stored in model_index.json; key order is fixed so it compares as a string. */
function fingerprint(r: Resolved): Record<string, unknown> {
  return {
    version: GENERATOR_VERSION,
    family: r.family,
    arch: r.arch,
    encoderOutput: r.withEncoder ? r.encoderOutput : null,
    ioDtype: r.ioDtype,
    seed: r.seed,
    withEncoder: r.withEncoder,
  };
}

/**
 * Writes a small random-weight VAE in Hugging Face optimum's ONNX layout for a diffusers pipeline:
 * vae_decoder/{model.onnx,config.json}, vae_encoder/{model.onnx,config.json} for image families,
 * and model_index.json (written last, so its presence marks a complete directory).
 */
export async function generateVaeModel(opts: GenerateVaeOptions): Promise<void> {
  const r = resolve(opts);
  const spec = FAMILY_SPECS[r.family];
  const config = json(vaeConfig(r.family, r.arch));

  const { vae_decoder: decoder, vae_encoder: encoder } = COMPONENTS;
  await writeAtomic(join(opts.outDir, decoder.graph), buildDecoder(r));
  await writeAtomic(join(opts.outDir, decoder.config), config);
  if (r.withEncoder) {
    await writeAtomic(join(opts.outDir, encoder.graph), buildEncoder(r));
    await writeAtomic(join(opts.outDir, encoder.config), config);
  } else {
    // A leftover encoder from an earlier run would make readers think this model can encode.
    await rm(dirname(join(opts.outDir, encoder.graph)), { recursive: true, force: true });
  }
  await writeAtomic(
    join(opts.outDir, MODEL_INDEX),
    json({
      _class_name: spec.pipelineClass,
      _diffusers_version: "0.32.0",
      _hybrid_family: r.family,
      _hybrid_generator: fingerprint(r),
      vae: ["diffusers", spec.vaeClass],
    }),
  );
}

/** The set `pnpm start` serves and tests use. */
export const DEFAULT_MODELS: ReadonlyArray<{ id: string } & Omit<GenerateVaeOptions, "outDir">> = [
  { id: "sd-v1-tiny", family: "sd-v1", encoderOutput: "latent_parameters", ioDtype: "float32" },
  { id: "sdxl-tiny", family: "sdxl", encoderOutput: "latent_sample", ioDtype: "float16" },
  { id: "flux-tiny", family: "flux", encoderOutput: "latent_parameters" },
  { id: "hunyuan-video-tiny", family: "hunyuan-video", withEncoder: false },
];

/** True when `dir` holds every file these options produce and was generated with the same options. */
async function isUpToDate(dir: string, r: Resolved): Promise<boolean> {
  const { vae_decoder: decoder, vae_encoder: encoder } = COMPONENTS;
  const files = [decoder.graph, decoder.config];
  if (r.withEncoder) files.push(encoder.graph, encoder.config);
  return generatedWith(dir, files, fingerprint(r));
}

/**
 * Writes `<root>/<id>` for each of DEFAULT_MODELS and returns the ids. A model already generated
 * with the same settings is left alone unless `force` is set.
 */
export async function generateDefaultVaes(root: string, opts: { force?: boolean } = {}): Promise<string[]> {
  for (const { id, ...options } of DEFAULT_MODELS) {
    const outDir = join(root, id);
    if (!opts.force && (await isUpToDate(outDir, resolve({ ...options, outDir })))) continue;
    await generateVaeModel({ ...options, outDir });
  }
  return DEFAULT_MODELS.map((m) => m.id);
}
