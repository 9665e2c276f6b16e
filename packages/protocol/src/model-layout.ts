// Hugging Face optimum's ONNX layouts of diffusers models, as data: which folder holds which
// graph, what each layout requires, and in which order a download must land its files. The
// runtime (`detectModelDir` in @hybrid/inference), the Hub pull and the model generator
// (@hybrid/model-tools) all read this table; it sits here, below both packages, because the
// runtime's tests need the generator and the generator needs the layout. No I/O: a layout is
// matched against whatever says which files exist (a directory, a Hub listing).

/** A component folder of an optimum export. */
export type ComponentName =
  | "text_encoder"
  | "text_encoder_2"
  | "text_encoder_3"
  | "unet"
  | "transformer"
  | "vae_decoder"
  | "vae_encoder";

/** Where a component's graph and config are, relative to the model directory. */
export interface ComponentFiles {
  graph: string;
  config: string;
}

/** Every component's files. The one place these paths are spelled out. */
export const COMPONENTS: Readonly<Record<ComponentName, ComponentFiles>> = {
  text_encoder: { graph: "text_encoder/model.onnx", config: "text_encoder/config.json" },
  text_encoder_2: { graph: "text_encoder_2/model.onnx", config: "text_encoder_2/config.json" },
  text_encoder_3: { graph: "text_encoder_3/model.onnx", config: "text_encoder_3/config.json" },
  unet: { graph: "unet/model.onnx", config: "unet/config.json" },
  transformer: { graph: "transformer/model.onnx", config: "transformer/config.json" },
  vae_decoder: { graph: "vae_decoder/model.onnx", config: "vae_decoder/config.json" },
  vae_encoder: { graph: "vae_encoder/model.onnx", config: "vae_encoder/config.json" },
};

/** The pipeline's index: its class and components; written last, it marks a complete directory. */
export const MODEL_INDEX = "model_index.json";
export const SCHEDULER_CONFIG = "scheduler/scheduler_config.json";
/** A bare VAE export's config, at the directory's root. */
export const ROOT_CONFIG = "config.json";
/**
 * Where a VAE's config may be, first found wins: optimum copies it beside the decoder; diffusers'
 * own layout keeps it in vae/; a bare export has it at the root.
 */
export const VAE_CONFIGS: readonly string[] = [COMPONENTS.vae_decoder.config, "vae/config.json", ROOT_CONFIG];

/** A tokenizer folder of an export. */
export type TokenizerName = "tokenizer" | "tokenizer_2" | "tokenizer_3";

/** Tokenizer formats; each with its files, the first being the one a tokenizer cannot do without. */
export const TOKENIZER_FILES = {
  clip: ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"],
  // T5's fast tokenizer: tokenizer.json holds the whole Unigram model; spiece.model is the
  // SentencePiece original that only the slow tokenizer reads.
  t5: ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model"],
} as const satisfies Record<string, readonly [string, ...string[]]>;
export type TokenizerKind = keyof typeof TOKENIZER_FILES;

/** One text encoder of a pipeline with the tokenizer that feeds it. */
export interface TextEncoderSlot {
  encoder: ComponentName;
  tokenizer: TokenizerName;
  tokenizerKind: TokenizerKind;
  /** The tokenizer folder to use when `tokenizer` is absent (SDXL exports may share the first). */
  tokenizerFallback?: TokenizerName;
  /**
   * The pipeline runs without this encoder (SD3's T5: its embeddings are then zeros), so
   * requiredFiles leaves it out; when present, its graph and tokenizer are used.
   */
  optional?: boolean;
}

/** Names of the pipeline layouts known (a new family adds its name and an entry of PIPELINE_LAYOUTS). */
export type PipelineLayoutName = "sd" | "sdxl" | "sd3" | "flux";

/** A diffusion pipeline's layout: its components, as data. */
export interface PipelineLayout {
  name: PipelineLayoutName;
  /** The denoiser's component: a UNet (SD, SDXL) or a transformer (Flux, SD3). */
  denoiser: Extract<ComponentName, "unet" | "transformer">;
  /** Text encoders in the order their hidden states are joined. */
  text: readonly TextEncoderSlot[];
  /** Side of the square latent patches the denoiser takes as tokens (Flux: 2); 1: no packing. */
  patchSize: number;
}

const CLIP_1: TextEncoderSlot = { encoder: "text_encoder", tokenizer: "tokenizer", tokenizerKind: "clip" };

/**
 * Known pipeline layouts, most specific first: the first whose required files all exist wins.
 * SD3 and Flux both have two text encoders and a transformer; SD3's second tokenizer is CLIP's
 * (vocab.json), Flux's is T5's (tokenizer.json), which tells them apart. SDXL has a second text
 * encoder too but a UNet.
 */
export const PIPELINE_LAYOUTS: readonly PipelineLayout[] = [
  {
    name: "sd3",
    denoiser: "transformer",
    text: [
      CLIP_1,
      { encoder: "text_encoder_2", tokenizer: "tokenizer_2", tokenizerKind: "clip" },
      { encoder: "text_encoder_3", tokenizer: "tokenizer_3", tokenizerKind: "t5", optional: true },
    ],
    // The transformer patchifies the [B, 16, h, w] latents itself (its config's patch_size 2).
    patchSize: 1,
  },
  {
    name: "flux",
    denoiser: "transformer",
    text: [CLIP_1, { encoder: "text_encoder_2", tokenizer: "tokenizer_2", tokenizerKind: "t5" }],
    // The pipeline packs 2×2 latent patches into tokens of 64 values before the transformer.
    patchSize: 2,
  },
  {
    name: "sdxl",
    denoiser: "unet",
    text: [
      CLIP_1,
      {
        encoder: "text_encoder_2",
        tokenizer: "tokenizer_2",
        tokenizerKind: "clip",
        tokenizerFallback: "tokenizer",
      },
    ],
    patchSize: 1,
  },
  { name: "sd", denoiser: "unet", text: [CLIP_1], patchSize: 1 },
];

/** A tokenizer folder's marker file (the one it cannot do without). */
export const tokenizerMarker = (dir: TokenizerName, kind: TokenizerKind) =>
  `${dir}/${TOKENIZER_FILES[kind][0]}`;

/**
 * The files a pipeline layout cannot do without, in the order a reader needs them: scheduler,
 * tokenizers, text encoders, denoiser, VAE decoder. The VAE encoder (image-to-image), optional
 * text encoders (SD3's T5), configs and model_index.json are optional.
 */
export function requiredFiles(layout: PipelineLayout): string[] {
  const text = layout.text.filter((t) => !t.optional);
  return [
    SCHEDULER_CONFIG,
    ...text.filter((t) => !t.tokenizerFallback).map((t) => tokenizerMarker(t.tokenizer, t.tokenizerKind)),
    ...text.map((t) => COMPONENTS[t.encoder].graph),
    COMPONENTS[layout.denoiser].graph,
    COMPONENTS.vae_decoder.graph,
  ];
}

/** What a VAE-only export cannot do without. */
export const VAE_REQUIRED: readonly string[] = [COMPONENTS.vae_decoder.graph];

/** A set of files matched against the known layouts. */
export type LayoutMatch =
  | { kind: "pipeline"; layout: PipelineLayout }
  /** `closest`: the pipeline layout missing the fewest files, with what it misses. */
  | { kind: "vae" | "none"; closest: PipelineLayout; missing: string[] };

/**
 * Which layout the files that `has` says exist form: a pipeline (all of a layout's required
 * files, the first such layout of PIPELINE_LAYOUTS), else a VAE (a decoder and no denoiser), else none. A directory with a denoiser but
 * missing pieces is an incomplete pipeline (`none`), not a VAE.
 */
export function matchLayout(has: (path: string) => boolean): LayoutMatch {
  let closest: { layout: PipelineLayout; missing: string[]; rank: number } | null = null;
  for (const layout of PIPELINE_LAYOUTS) {
    const missing = requiredFiles(layout).filter((p) => !has(p));
    if (missing.length === 0) return { kind: "pipeline", layout };
    // Fewest missing files; on a tie the layout whose denoiser is there (Flux missing its T5 is
    // not an SD missing its UNet), then the less specific one.
    const rank = 2 * missing.length + (has(COMPONENTS[layout.denoiser].graph) ? 0 : 1);
    if (!closest || rank <= closest.rank) closest = { layout, missing, rank };
  }
  const denoiser = PIPELINE_LAYOUTS.some((l) => has(COMPONENTS[l.denoiser].graph));
  const kind = !denoiser && VAE_REQUIRED.every(has) ? "vae" : "none";
  return { kind, closest: closest!.layout, missing: closest!.missing };
}

const layoutComponents = (): ComponentName[] => [
  ...new Set([
    ...PIPELINE_LAYOUTS.flatMap((l) => [...l.text.map((t) => t.encoder), l.denoiser]),
    "vae_decoder" as const,
    "vae_encoder" as const,
  ]),
];
/** Each tokenizer folder with every file name some layout's tokenizer there has (tokenizer_2 is CLIP's or T5's). */
const layoutTokenizers = () => {
  const files = new Map<TokenizerName, Set<string>>();
  for (const t of PIPELINE_LAYOUTS.flatMap((l) => l.text)) {
    const names = files.get(t.tokenizer) ?? new Set<string>();
    for (const f of TOKENIZER_FILES[t.tokenizerKind]) names.add(f);
    files.set(t.tokenizer, names);
  }
  return files;
};

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const COMPONENT_FILE = new RegExp(
  `^(?:${layoutComponents().map(escapeRegExp).join("|")})/(?:model\\.onnx|config\\.json|[^/\\\\]+\\.onnx_data|weights\\.pb)$`,
);
const TOKENIZER_FILE = new RegExp(
  `^(?:${[...layoutTokenizers()]
    .map(([dir, names]) => `${escapeRegExp(dir)}/(?:${[...names].map(escapeRegExp).join("|")})`)
    .join("|")})$`,
);

/**
 * True for a path (relative, `/`-separated) that some known layout uses: model_index.json, the
 * scheduler config, the tokenizers' files, and each component's `model.onnx`, `config.json` and
 * external weights (`*.onnx_data`, `weights.pb`). Everything else (safetensors, .bin, fp16
 * variant folders, READMEs, images) is not part of a layout.
 */
export function isLayoutFile(path: string): boolean {
  return (
    path === MODEL_INDEX ||
    path === SCHEDULER_CONFIG ||
    TOKENIZER_FILE.test(path) ||
    COMPONENT_FILE.test(path)
  );
}

/** The folders that hold layout files ("" is the model directory itself). */
export const LAYOUT_DIRS: readonly string[] = [
  "",
  SCHEDULER_CONFIG.split("/")[0]!,
  ...layoutTokenizers().keys(),
  ...layoutComponents(),
];

/**
 * Where a file goes in a download: 0 first, 2 last. A reader treats a directory as a model once
 * the VAE decoder's graph exists and as complete once model_index.json does, so those land last.
 */
export function downloadRank(path: string): number {
  if (path === MODEL_INDEX) return 2;
  return path === COMPONENTS.vae_decoder.graph ? 1 : 0;
}
