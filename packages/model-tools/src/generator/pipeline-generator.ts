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
import { buildT5Encoder, T5_TINY, t5EncoderConfig } from "./t5-models.ts";
import { t5TokenizerFiles } from "./t5-tokenizer-files.ts";
import {
  buildTextEncoder,
  CLIP_G_PROJ_TINY,
  CLIP_L_PROJ_TINY,
  CLIP_TEXT_2_TINY,
  CLIP_TEXT_TINY,
  type IdsDtype,
  type TextEncoderSpec,
  textEncoderConfig,
} from "./text-encoder-models.ts";
import { clipVocabulary, EOS_TOKEN, tokenizerFiles } from "./tokenizer-files.ts";
import {
  buildFluxTransformer,
  buildSd3Transformer,
  type FluxTransformerSpec,
  fluxTransformerConfig,
  type Sd3TransformerSpec,
  sd3TransformerConfig,
} from "./transformer-models.ts";
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
export type PipelineKind = "sd-v1" | "sdxl" | "lcm" | "flux-schnell" | "flux-dev" | "sd3";

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
  /**
   * dtype of the CLIP text encoders' `input_ids` (T5's are always int64, as optimum exports it).
   * @defaultValue "int32" (optimum's SD text encoders)
   */
  idsDtype?: IdsDtype;
  /**
   * dtype of the UNet's float inputs/outputs and of the VAE's I/O; "float16" casts to float32 inside
   * (CPU fp16 kernels are unreliable). The text encoders' outputs stay float32, and so does a
   * transformer's I/O. @defaultValue "float32"
   */
  ioDtype?: FloatIo;
  /**
   * Denoiser size (UNet or transformer): "tiny" (tests, defaults) or "bench" (realistic compute
   * for benchmarks). @defaultValue "tiny"
   */
  arch?: UnetArch;
}

/** Bumped whenever a generated file changes, so generateDefaultPipelines regenerates old directories. */
const GENERATOR_VERSION = 1;
const DIFFUSERS_VERSION = "0.32.0";

type Resolved = Required<Omit<GeneratePipelineOptions, "outDir">>;

interface ClipComponent {
  type: "clip";
  dir: ComponentName;
  tokenizerDir: TokenizerName;
  spec: TextEncoderSpec;
  padToken: string;
}

interface T5Component {
  type: "t5";
  dir: ComponentName;
  tokenizerDir: TokenizerName;
}

type TextComponent = ClipComponent | T5Component;

type Denoiser =
  | { type: "unet"; spec: UnetSpec }
  | { type: "flux"; spec: FluxTransformerSpec }
  | { type: "sd3"; spec: Sd3TransformerSpec };

interface KindSpec {
  pipelineClass: string;
  /** The VAE family: its scaling factor and latent channels are the pipeline's. */
  family: Family;
  /** Which output the VAE encoder exports (the two optimum variants, as DEFAULT_MODELS uses them). */
  encoderOutput: EncoderOutput;
  text: TextComponent[];
  denoiser: Denoiser;
  scheduler: Record<string, unknown>;
  /** Extra model_index.json keys that the real pipeline's index carries. */
  extraIndex: Record<string, unknown>;
}

const SD_TEXT: ClipComponent = {
  type: "clip",
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

/** The FlowMatchEulerDiscreteScheduler keys FLUX.1's configs share. */
const FLUX_FLOW_MATCH = {
  _class_name: "FlowMatchEulerDiscreteScheduler",
  _diffusers_version: DIFFUSERS_VERSION,
  base_image_seq_len: 256,
  base_shift: 0.5,
  max_image_seq_len: 4096,
  max_shift: 1.15,
  num_train_timesteps: 1000,
};

/** black-forest-labs/FLUX.1-schnell's scheduler_config.json. */
const FLOW_MATCH_SCHNELL = { ...FLUX_FLOW_MATCH, shift: 1.0, use_dynamic_shifting: false };
/** black-forest-labs/FLUX.1-dev's scheduler_config.json (the shift follows the image's token count). */
const FLOW_MATCH_DEV = { ...FLUX_FLOW_MATCH, shift: 3.0, use_dynamic_shifting: true };
/** stabilityai/stable-diffusion-3-medium-diffusers' scheduler_config.json. */
const FLOW_MATCH_SD3 = {
  _class_name: "FlowMatchEulerDiscreteScheduler",
  _diffusers_version: DIFFUSERS_VERSION,
  num_train_timesteps: 1000,
  shift: 3.0,
};

/** Flux's text encoders: CLIP ViT-L (its pooled output) and T5 (its hidden states). */
const FLUX_TEXT: TextComponent[] = [
  SD_TEXT,
  { type: "t5", dir: "text_encoder_2", tokenizerDir: "tokenizer_2" },
];

function fluxKind(guidanceEmbeds: boolean, scheduler: Record<string, unknown>): KindSpec {
  return {
    pipelineClass: "FluxPipeline",
    family: "flux",
    encoderOutput: "latent_parameters",
    text: FLUX_TEXT,
    denoiser: {
      type: "flux",
      spec: {
        jointAttentionDim: T5_TINY.dModel,
        // CLIPTextModel's pooler_output is as wide as its hidden states (768 for real).
        pooledProjectionDim: CLIP_TEXT_TINY.hiddenSize,
        guidanceEmbeds,
      },
    },
    scheduler,
    extraIndex: { feature_extractor: [null, null], image_encoder: [null, null] },
  };
}

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
    denoiser: { type: "unet", spec: { crossAttentionDim: CLIP_TEXT_TINY.hiddenSize } },
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
      {
        type: "clip",
        dir: "text_encoder_2",
        tokenizerDir: "tokenizer_2",
        spec: CLIP_TEXT_2_TINY,
        padToken: "!",
      },
    ],
    denoiser: {
      type: "unet",
      spec: {
        // SDXL concatenates both encoders' hidden states along the feature axis (768 + 1280 for real).
        crossAttentionDim: CLIP_TEXT_TINY.hiddenSize + CLIP_TEXT_2_TINY.hiddenSize,
        textTime: { projectionDim: CLIP_TEXT_2_TINY.projectionDim, timeEmbedDim: 8 },
      },
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
    denoiser: { type: "unet", spec: { crossAttentionDim: CLIP_TEXT_TINY.hiddenSize, timeCondProjDim: 256 } },
    scheduler: LCM_SCHEDULER,
    extraIndex: NO_SAFETY,
  },
  "flux-schnell": fluxKind(false, FLOW_MATCH_SCHNELL),
  "flux-dev": fluxKind(true, FLOW_MATCH_DEV),
  sd3: {
    pipelineClass: "StableDiffusion3Pipeline",
    family: "sd3",
    encoderOutput: "latent_parameters",
    text: [
      {
        type: "clip",
        dir: "text_encoder",
        tokenizerDir: "tokenizer",
        spec: CLIP_L_PROJ_TINY,
        padToken: EOS_TOKEN,
      },
      // Like SDXL's, SD3's OpenCLIP tokenizer pads with "!".
      {
        type: "clip",
        dir: "text_encoder_2",
        tokenizerDir: "tokenizer_2",
        spec: CLIP_G_PROJ_TINY,
        padToken: "!",
      },
      { type: "t5", dir: "text_encoder_3", tokenizerDir: "tokenizer_3" },
    ],
    denoiser: {
      type: "sd3",
      spec: {
        // T5's width; SD3 zero-pads the joined CLIP states (32 + 48 here, 768 + 1280 for real) to it.
        jointAttentionDim: T5_TINY.dModel,
        pooledProjectionDim: CLIP_L_PROJ_TINY.projectionDim + CLIP_G_PROJ_TINY.projectionDim,
      },
    },
    scheduler: FLOW_MATCH_SD3,
    extraIndex: { feature_extractor: [null, null], image_encoder: [null, null] },
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
    if (t.type === "t5") {
      for (const [name, text] of Object.entries(t5TokenizerFiles()))
        files.set(`${t.tokenizerDir}/${name}`, text);
      files.set(COMPONENTS[t.dir].graph, buildT5Encoder(T5_TINY, { seed: r.seed, label: t.dir }));
      files.set(COMPONENTS[t.dir].config, json(t5EncoderConfig(T5_TINY)));
      continue;
    }
    for (const [name, text] of Object.entries(tokenizerFiles(t.padToken)))
      files.set(`${t.tokenizerDir}/${name}`, text);
    const padId = vocab.tokens.indexOf(t.padToken);
    files.set(COMPONENTS[t.dir].graph, buildTextEncoder(t.spec, { idsDtype: r.idsDtype, seed: r.seed }));
    files.set(COMPONENTS[t.dir].config, json(textEncoderConfig(t.spec, padId)));
  }
  const d = k.denoiser;
  if (d.type === "unet") {
    files.set(COMPONENTS.unet.graph, buildUnet(d.spec, r));
    files.set(COMPONENTS.unet.config, json(unetConfig(d.spec, r.arch)));
  } else if (d.type === "flux") {
    files.set(COMPONENTS.transformer.graph, buildFluxTransformer(d.spec, r));
    files.set(COMPONENTS.transformer.config, json(fluxTransformerConfig(d.spec, r.arch)));
  } else {
    files.set(COMPONENTS.transformer.graph, buildSd3Transformer(d.spec, r));
    files.set(COMPONENTS.transformer.config, json(sd3TransformerConfig(d.spec, r.arch)));
  }
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
  const denoiserClass = {
    unet: ["unet", "UNet2DConditionModel"],
    flux: ["transformer", "FluxTransformer2DModel"],
    sd3: ["transformer", "SD3Transformer2DModel"],
  }[k.denoiser.type] as [string, string];
  const components: Record<string, unknown> = {
    scheduler: ["diffusers", k.scheduler._class_name],
    [denoiserClass[0]]: ["diffusers", denoiserClass[1]],
    vae: ["diffusers", FAMILY_SPECS[k.family].vaeClass],
  };
  for (const t of k.text) {
    components[t.dir] = ["transformers", t.type === "t5" ? "T5EncoderModel" : t.spec.architecture];
    components[t.tokenizerDir] = ["transformers", t.type === "t5" ? "T5TokenizerFast" : "CLIPTokenizer"];
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

/**
 * Folders some kind writes; the ones this kind lacks are removed, and so are the tokenizer folders
 * it rewrites (tokenizer_2 is CLIP's for SDXL and SD3, T5's for Flux), so stale files cannot
 * mislead readers.
 */
const OWN_DIRS: ReadonlyArray<ComponentName | TokenizerName> = [
  "text_encoder_2",
  "text_encoder_3",
  "tokenizer",
  "tokenizer_2",
  "tokenizer_3",
  "unet",
  "transformer",
];

/**
 * Writes a small random-weight diffusion pipeline in the layout `optimum-cli export onnx`
 * produces: model_index.json, scheduler/, the tokenizers and text encoders (SD: CLIP; SDXL: two
 * CLIPs; Flux: CLIP + T5 in text_encoder_2/; SD3: two CLIPs with projection + T5 in
 * text_encoder_3/), unet/ or transformer/, vae_decoder/ and vae_encoder/, each model.onnx with its
 * config.json. model_index.json is removed first and written last, so its presence marks a
 * complete directory.
 */
export async function generatePipelineModel(opts: GeneratePipelineOptions): Promise<void> {
  const r = resolve(opts);
  const files = pipelineFiles(r);
  await rm(join(opts.outDir, MODEL_INDEX), { force: true });
  for (const dir of OWN_DIRS) {
    const written = [...files.keys()].filter((f) => f.startsWith(`${dir}/`));
    if (written.length === 0 || dir.startsWith("tokenizer")) {
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
  { id: "flux-schnell-tiny", kind: "flux-schnell" },
  { id: "flux-dev-tiny", kind: "flux-dev" },
  { id: "sd3-tiny", kind: "sd3" },
];

/** True when `dir` holds every file these options produce and was generated with the same options. */
async function isUpToDate(dir: string, r: Resolved): Promise<boolean> {
  const k = KINDS[r.kind];
  const denoiser = k.denoiser.type === "unet" ? COMPONENTS.unet : COMPONENTS.transformer;
  const expected = [denoiser.graph, COMPONENTS.vae_decoder.graph, COMPONENTS.vae_encoder.graph];
  for (const t of k.text) expected.push(COMPONENTS[t.dir].graph, tokenizerMarker(t.tokenizerDir, t.type));
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
