import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  COMPONENTS,
  type ComponentName,
  type Family,
  MODEL_INDEX,
  SCHEDULER_CONFIG,
  type TokenizerName,
  tokenizerMarker,
} from "@hybrid/protocol";
import { generatedWith, json, writeAtomic } from "./files.ts";
import type { FloatIo } from "./nn-graph.ts";
import {
  buildTextEncoder,
  CLIP_TEXT_2_TINY,
  CLIP_TEXT_TINY,
  type IdsDtype,
  type TextEncoderSpec,
  textEncoderConfig,
} from "./text-encoder-models.ts";
import { clipVocabulary, EOS_TOKEN, tokenizerFiles } from "./tokenizer-files.ts";
import {
  buildUnet,
  type TimestepDtype,
  type TimestepShape,
  type UnetArch,
  type UnetSpec,
  unetConfig,
} from "./unet-models.ts";
import { buildDecoder, buildEncoder, type EncoderOutput, FAMILY_SPECS, vaeConfig } from "./vae-models.ts";

/** Which diffusers pipeline the directory imitates. */
export type PipelineKind = "sd-v1" | "sdxl" | "lcm";

export interface GeneratePipelineOptions {
  kind: PipelineKind;
  /** Pipeline directory to write. */
  outDir: string;
  /** Weight seed; the same options give byte-identical files. @defaultValue 0 */
  seed?: number;
  /** dtype of the UNet's `timestep`. @defaultValue "float32" (current optimum) */
  timestepDtype?: TimestepDtype;
  /** Declared shape of `timestep`. @defaultValue "steps" (optimum's `{0: "steps"}`) */
  timestepShape?: TimestepShape;
  /** dtype of the text encoders' `input_ids`. @defaultValue "int32" (optimum's SD text encoders) */
  idsDtype?: IdsDtype;
  /**
   * dtype of the UNet's float inputs/outputs and of the VAE's I/O; "float16" casts to float32 inside
   * (CPU fp16 kernels are unreliable). The text encoders' outputs stay float32. @defaultValue "float32"
   */
  ioDtype?: FloatIo;
  /** UNet size: "tiny" (tests, defaults) or "bench" (realistic compute for benchmarks). @defaultValue "tiny" */
  arch?: UnetArch;
}

/** Bumped whenever a generated file changes, so generateDefaultPipelines regenerates old directories. */
const GENERATOR_VERSION = 1;
const DIFFUSERS_VERSION = "0.32.0";

type Resolved = Required<Omit<GeneratePipelineOptions, "outDir">>;

interface TextComponent {
  dir: ComponentName;
  tokenizerDir: TokenizerName;
  spec: TextEncoderSpec;
  padToken: string;
}

interface KindSpec {
  pipelineClass: string;
  /** The VAE family: its scaling factor and latent channels are the pipeline's. */
  family: Family;
  /** Which output the VAE encoder exports (the two optimum variants, as DEFAULT_MODELS uses them). */
  encoderOutput: EncoderOutput;
  text: TextComponent[];
  unet: UnetSpec;
  scheduler: Record<string, unknown>;
  /** Extra model_index.json keys that the real pipeline's index carries. */
  extraIndex: Record<string, unknown>;
}

const SD_TEXT: TextComponent = {
  dir: "text_encoder",
  tokenizerDir: "tokenizer",
  spec: CLIP_TEXT_TINY,
  padToken: EOS_TOKEN,
};

/** The betas every SD-family scheduler below shares. */
const SD_BETAS = {
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  trained_betas: null,
};

/** runwayml/stable-diffusion-v1-5's scheduler_config.json. */
const PNDM_SD15 = {
  _class_name: "PNDMScheduler",
  _diffusers_version: DIFFUSERS_VERSION,
  ...SD_BETAS,
  clip_sample: false,
  prediction_type: "epsilon",
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
};

/** stabilityai/stable-diffusion-xl-base-1.0's scheduler_config.json. */
const EULER_SDXL = {
  _class_name: "EulerDiscreteScheduler",
  _diffusers_version: DIFFUSERS_VERSION,
  ...SD_BETAS,
  clip_sample: false,
  interpolation_type: "linear",
  prediction_type: "epsilon",
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  use_karras_sigmas: false,
};

/** SimianLuo/LCM_Dreamshaper_v7's scheduler_config.json. */
const LCM_SCHEDULER = {
  _class_name: "LCMScheduler",
  _diffusers_version: DIFFUSERS_VERSION,
  ...SD_BETAS,
  clip_sample: false,
  clip_sample_range: 1.0,
  dynamic_thresholding_ratio: 0.995,
  original_inference_steps: 50,
  prediction_type: "epsilon",
  rescale_betas_zero_snr: false,
  sample_max_value: 1.0,
  set_alpha_to_one: true,
  steps_offset: 1,
  thresholding: false,
  timestep_scaling: 10.0,
  timestep_spacing: "leading",
};

/** Components diffusers records as absent: readers must skip `[null, null]` entries. */
const NO_SAFETY = {
  feature_extractor: [null, null],
  image_encoder: [null, null],
  requires_safety_checker: false,
  safety_checker: [null, null],
};

const KINDS: Readonly<Record<PipelineKind, KindSpec>> = {
  "sd-v1": {
    pipelineClass: "StableDiffusionPipeline",
    family: "sd-v1",
    encoderOutput: "latent_parameters",
    text: [SD_TEXT],
    unet: { crossAttentionDim: CLIP_TEXT_TINY.hiddenSize },
    scheduler: PNDM_SD15,
    extraIndex: NO_SAFETY,
  },
  sdxl: {
    pipelineClass: "StableDiffusionXLPipeline",
    family: "sdxl",
    encoderOutput: "latent_sample",
    text: [
      SD_TEXT,
      // SDXL's second tokenizer pads with "!" (id 0), not with the end-of-text token.
      { dir: "text_encoder_2", tokenizerDir: "tokenizer_2", spec: CLIP_TEXT_2_TINY, padToken: "!" },
    ],
    unet: {
      // SDXL concatenates both encoders' hidden states along the feature axis (768 + 1280 for real).
      crossAttentionDim: CLIP_TEXT_TINY.hiddenSize + CLIP_TEXT_2_TINY.hiddenSize,
      textTime: { projectionDim: CLIP_TEXT_2_TINY.projectionDim, timeEmbedDim: 8 },
    },
    scheduler: EULER_SDXL,
    extraIndex: {
      feature_extractor: [null, null],
      force_zeros_for_empty_prompt: true,
      image_encoder: [null, null],
    },
  },
  lcm: {
    pipelineClass: "LatentConsistencyModelPipeline",
    family: "sd-v1",
    encoderOutput: "latent_parameters",
    text: [SD_TEXT],
    unet: { crossAttentionDim: CLIP_TEXT_TINY.hiddenSize, timeCondProjDim: 256 },
    scheduler: LCM_SCHEDULER,
    extraIndex: NO_SAFETY,
  },
};

function resolve(opts: Omit<GeneratePipelineOptions, "outDir">): Resolved {
  return {
    kind: opts.kind,
    seed: opts.seed ?? 0,
    timestepDtype: opts.timestepDtype ?? "float32",
    timestepShape: opts.timestepShape ?? "steps",
    idsDtype: opts.idsDtype ?? "int32",
    ioDtype: opts.ioDtype ?? "float32",
    arch: opts.arch ?? "tiny",
  };
}

/** The fingerprint stored in model_index.json; key order is fixed so it compares as a string. */
function fingerprint(r: Resolved): Record<string, unknown> {
  return {
    version: GENERATOR_VERSION,
    kind: r.kind,
    seed: r.seed,
    timestepDtype: r.timestepDtype,
    timestepShape: r.timestepShape,
    idsDtype: r.idsDtype,
    ioDtype: r.ioDtype,
    // Left out for "tiny", so directories generated before the option existed stay up to date.
    ...(r.arch === "tiny" ? {} : { arch: r.arch }),
  };
}

/** Every file of a pipeline directory except model_index.json, as relative path → contents. */
function pipelineFiles(r: Resolved): Map<string, Uint8Array | string> {
  const k = KINDS[r.kind];
  const files = new Map<string, Uint8Array | string>();
  const vocab = clipVocabulary();
  for (const t of k.text) {
    for (const [name, text] of Object.entries(tokenizerFiles(t.padToken)))
      files.set(`${t.tokenizerDir}/${name}`, text);
    const padId = vocab.tokens.indexOf(t.padToken);
    files.set(COMPONENTS[t.dir].graph, buildTextEncoder(t.spec, { idsDtype: r.idsDtype, seed: r.seed }));
    files.set(COMPONENTS[t.dir].config, json(textEncoderConfig(t.spec, padId)));
  }
  files.set(COMPONENTS.unet.graph, buildUnet(k.unet, r));
  files.set(COMPONENTS.unet.config, json(unetConfig(k.unet, r.arch)));
  const vae = { family: k.family, arch: "tiny" as const, ioDtype: r.ioDtype, seed: r.seed };
  const vaeJson = json(vaeConfig(k.family, "tiny"));
  files.set(COMPONENTS.vae_decoder.graph, buildDecoder(vae));
  files.set(COMPONENTS.vae_decoder.config, vaeJson);
  files.set(COMPONENTS.vae_encoder.graph, buildEncoder({ ...vae, encoderOutput: k.encoderOutput }));
  files.set(COMPONENTS.vae_encoder.config, vaeJson);
  files.set(SCHEDULER_CONFIG, json(k.scheduler));
  return files;
}

function modelIndex(r: Resolved): Record<string, unknown> {
  const k = KINDS[r.kind];
  const components: Record<string, unknown> = {
    scheduler: ["diffusers", k.scheduler._class_name],
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", FAMILY_SPECS[k.family].vaeClass],
  };
  for (const t of k.text) {
    components[t.dir] = ["transformers", t.spec.architecture];
    components[t.tokenizerDir] = ["transformers", "CLIPTokenizer"];
  }
  const sorted = Object.fromEntries(
    Object.entries({ ...k.extraIndex, ...components }).sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  return {
    _class_name: k.pipelineClass,
    _diffusers_version: DIFFUSERS_VERSION,
    _hybrid_family: k.family,
    _hybrid_generator: fingerprint(r),
    ...sorted,
  };
}

/** Component folders some kind writes; the ones this kind lacks are removed so stale ones cannot mislead readers. */
const ALL_TEXT_DIRS: ReadonlyArray<ComponentName | TokenizerName> = ["text_encoder_2", "tokenizer_2"];

/**
 * Writes a small random-weight Stable Diffusion-family pipeline in the layout `optimum-cli export
 * onnx` produces: model_index.json, scheduler/, tokenizer/ (+ tokenizer_2/ for SDXL),
 * text_encoder/ (+ text_encoder_2/), unet/, vae_decoder/ and vae_encoder/, each model.onnx with
 * its config.json. model_index.json is removed first and written last, so its presence marks a
 * complete directory.
 */
export async function generatePipelineModel(opts: GeneratePipelineOptions): Promise<void> {
  const r = resolve(opts);
  const files = pipelineFiles(r);
  await rm(join(opts.outDir, MODEL_INDEX), { force: true });
  for (const dir of ALL_TEXT_DIRS) {
    if (![...files.keys()].some((f) => f.startsWith(`${dir}/`))) {
      await rm(join(opts.outDir, dir), { recursive: true, force: true });
    }
  }
  for (const [path, data] of files) await writeAtomic(join(opts.outDir, path), data);
  await writeAtomic(join(opts.outDir, MODEL_INDEX), json(modelIndex(r)));
}

/** The pipelines `pnpm start` serves and tests use. */
export const DEFAULT_PIPELINES: ReadonlyArray<{ id: string } & Omit<GeneratePipelineOptions, "outDir">> = [
  { id: "sd-tiny", kind: "sd-v1" },
  { id: "sdxl-pipe-tiny", kind: "sdxl", ioDtype: "float16" },
  { id: "lcm-tiny", kind: "lcm" },
];

/** True when `dir` holds every file these options produce and was generated with the same options. */
async function isUpToDate(dir: string, r: Resolved): Promise<boolean> {
  const k = KINDS[r.kind];
  const expected = [COMPONENTS.unet.graph, COMPONENTS.vae_decoder.graph, COMPONENTS.vae_encoder.graph];
  for (const t of k.text) expected.push(COMPONENTS[t.dir].graph, tokenizerMarker(t.tokenizerDir, "clip"));
  return generatedWith(dir, expected, fingerprint(r));
}

/**
 * Writes `<root>/<id>` for each of DEFAULT_PIPELINES and returns the ids. A pipeline already
 * generated with the same settings is left alone unless `force` is set.
 */
export async function generateDefaultPipelines(
  root: string,
  opts: { force?: boolean } = {},
): Promise<string[]> {
  for (const { id, ...options } of DEFAULT_PIPELINES) {
    const outDir = join(root, id);
    if (!opts.force && (await isUpToDate(outDir, resolve(options)))) continue;
    await generatePipelineModel({ ...options, outDir });
  }
  return DEFAULT_PIPELINES.map((p) => p.id);
}
