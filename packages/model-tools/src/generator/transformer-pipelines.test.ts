import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatePipelineModel, type PipelineKind } from "./pipeline-generator.ts";
import { mulberry32 } from "./prng.ts";
import { T5_TINY } from "./t5-models.ts";
import { METASPACE, t5Vocabulary } from "./t5-tokenizer-files.ts";
import { clipVocabulary } from "./tokenizer-files.ts";
import { buildFluxTransformer, TRANSFORMER_ARCHS } from "./transformer-models.ts";

// Flux (schnell, dev) and SD3 pipelines: optimum's files, graph I/O, and graphs whose output
// depends on every input a pipeline feeds, so a conditioning bug in the pipeline changes the image.

let root: string;
const sessions: ort.InferenceSession[] = [];
const KINDS = ["flux-schnell", "flux-dev", "sd3"] as const satisfies PipelineKind[];
/** How long each generation took, ms. */
const took: Record<string, number> = {};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "transformer-pipelines-"));
  for (const kind of KINDS) {
    const t0 = performance.now();
    await generatePipelineModel({ kind, outDir: join(root, kind) });
    took[kind] = performance.now() - t0;
  }
});

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.release()));
  if (root) await rm(root, { recursive: true, force: true });
});

async function open(model: string | Uint8Array): Promise<ort.InferenceSession> {
  const s =
    typeof model === "string"
      ? await ort.InferenceSession.create(model, { intraOpNumThreads: 1 })
      : await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  sessions.push(s);
  return s;
}
const component = (kind: string, dir: string) => open(join(root, kind, dir, "model.onnx"));
const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

function gaussian(n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    out[i] = r * Math.cos(2 * Math.PI * rand());
  }
  return out;
}
const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);
const maxAbsDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const allFinite = (data: Float32Array) => data.every(Number.isFinite);

const CLIP_FILES = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"];
const T5_FILES = ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"];
const graph = (dir: string) => [`${dir}/config.json`, `${dir}/model.onnx`];
const VAE = [...graph("vae_decoder"), ...graph("vae_encoder")];

describe("Flux and SD3 pipelines", () => {
  it("write optimum's files, quickly", async () => {
    const flux = [
      "model_index.json",
      "scheduler/scheduler_config.json",
      ...CLIP_FILES.map((f) => `tokenizer/${f}`),
      ...T5_FILES.map((f) => `tokenizer_2/${f}`),
      ...graph("text_encoder"),
      ...graph("text_encoder_2"),
      ...graph("transformer"),
      ...VAE,
    ].sort();
    expect(await listFiles(join(root, "flux-schnell"))).toEqual(flux);
    expect(await listFiles(join(root, "flux-dev"))).toEqual(flux);
    expect(await listFiles(join(root, "sd3"))).toEqual(
      [
        "model_index.json",
        "scheduler/scheduler_config.json",
        ...CLIP_FILES.map((f) => `tokenizer/${f}`),
        ...CLIP_FILES.map((f) => `tokenizer_2/${f}`),
        ...T5_FILES.map((f) => `tokenizer_3/${f}`),
        ...graph("text_encoder"),
        ...graph("text_encoder_2"),
        ...graph("text_encoder_3"),
        ...graph("transformer"),
        ...VAE,
      ].sort(),
    );
    for (const ms of Object.values(took)) expect(ms).toBeLessThan(5000);
  });

  it("leave no other kind's files behind when a directory is regenerated as another kind", async () => {
    const out = join(root, "reused");
    await generatePipelineModel({ kind: "sd3", outDir: out });
    await generatePipelineModel({ kind: "flux-schnell", outDir: out });
    // SD3's CLIP tokenizer_2/vocab.json left beside Flux's T5 tokenizer would make it read as SD3.
    expect(await listFiles(out)).toEqual(await listFiles(join(root, "flux-schnell")));
    await generatePipelineModel({ kind: "sd-v1", outDir: out });
    const files = await listFiles(out);
    expect(files.filter((f) => /^(transformer|tokenizer_2|text_encoder_2)\//.test(f))).toEqual([]);
  });

  it("write diffusers' model_index.json and the real FlowMatch scheduler configs", async () => {
    const components = {
      scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
      text_encoder: ["transformers", "CLIPTextModel"],
      text_encoder_2: ["transformers", "T5EncoderModel"],
      tokenizer: ["transformers", "CLIPTokenizer"],
      tokenizer_2: ["transformers", "T5TokenizerFast"],
      transformer: ["diffusers", "FluxTransformer2DModel"],
      vae: ["diffusers", "AutoencoderKL"],
    };
    for (const kind of ["flux-schnell", "flux-dev"]) {
      const index = await readJson(join(root, kind, "model_index.json"));
      expect(index).toMatchObject({ _class_name: "FluxPipeline", _hybrid_family: "flux", ...components });
      expect(index).not.toHaveProperty("unet");
    }
    expect(await readJson(join(root, "sd3", "model_index.json"))).toMatchObject({
      _class_name: "StableDiffusion3Pipeline",
      _hybrid_family: "sd3",
      text_encoder: ["transformers", "CLIPTextModelWithProjection"],
      text_encoder_2: ["transformers", "CLIPTextModelWithProjection"],
      text_encoder_3: ["transformers", "T5EncoderModel"],
      tokenizer_2: ["transformers", "CLIPTokenizer"],
      tokenizer_3: ["transformers", "T5TokenizerFast"],
      transformer: ["diffusers", "SD3Transformer2DModel"],
    });
    const scheduler = (kind: string) => readJson(join(root, kind, "scheduler", "scheduler_config.json"));
    expect(await scheduler("flux-schnell")).toEqual({
      _class_name: "FlowMatchEulerDiscreteScheduler",
      _diffusers_version: "0.32.0",
      base_image_seq_len: 256,
      base_shift: 0.5,
      max_image_seq_len: 4096,
      max_shift: 1.15,
      num_train_timesteps: 1000,
      shift: 1.0,
      use_dynamic_shifting: false,
    });
    expect(await scheduler("flux-dev")).toMatchObject({
      shift: 3.0,
      use_dynamic_shifting: true,
      max_shift: 1.15,
    });
    expect(await scheduler("sd3")).toEqual({
      _class_name: "FlowMatchEulerDiscreteScheduler",
      _diffusers_version: "0.32.0",
      num_train_timesteps: 1000,
      shift: 3.0,
    });
  });

  it("write configs that agree with the graphs", async () => {
    const config = (kind: string, dir: string) => readJson(join(root, kind, dir, "config.json"));
    for (const [kind, guidance] of [
      ["flux-schnell", false],
      ["flux-dev", true],
    ] as const) {
      expect(await config(kind, "transformer")).toMatchObject({
        _class_name: "FluxTransformer2DModel",
        in_channels: 64,
        patch_size: 1,
        guidance_embeds: guidance,
        joint_attention_dim: T5_TINY.dModel,
        pooled_projection_dim: 32,
      });
      expect(await config(kind, "text_encoder_2")).toMatchObject({
        architectures: ["T5EncoderModel"],
        d_model: T5_TINY.dModel,
        vocab_size: t5Vocabulary().pieces.length,
        pad_token_id: 0,
        eos_token_id: 1,
      });
      for (const dir of ["vae_decoder", "vae_encoder"])
        expect(await config(kind, dir)).toMatchObject({
          latent_channels: 16,
          scaling_factor: 0.3611,
          shift_factor: 0.1159,
        });
    }
    expect(await config("sd3", "transformer")).toMatchObject({
      _class_name: "SD3Transformer2DModel",
      in_channels: 16,
      out_channels: 16,
      patch_size: 2,
      joint_attention_dim: T5_TINY.dModel,
      pooled_projection_dim: 32 + 48,
      caption_projection_dim: TRANSFORMER_ARCHS.tiny.width,
    });
    expect(await config("sd3", "text_encoder")).toMatchObject({
      hidden_size: 32,
      projection_dim: 32,
      num_hidden_layers: 2,
    });
    expect(await config("sd3", "text_encoder_2")).toMatchObject({
      hidden_size: 48,
      projection_dim: 48,
      pad_token_id: 0,
    });
    for (const dir of ["vae_decoder", "vae_encoder"])
      expect(await config("sd3", dir)).toMatchObject({
        latent_channels: 16,
        scaling_factor: 1.5305,
        shift_factor: 0.0609,
      });
  });
});

describe("graph I/O", () => {
  const F = "float32";
  const ids = (type: string) => ({ name: "input_ids", type, shape: ["batch_size", "sequence_length"] });
  const hidden = (n: number) => ["batch_size", "sequence_length", n];
  const T = T5_TINY.dModel;
  const t5 = { inputs: [ids("int64")], outputs: [{ name: "last_hidden_state", type: F, shape: hidden(T) }] };
  const fluxInputs = [
    { name: "hidden_states", type: F, shape: ["batch_size", "packed_height_width", 64] },
    { name: "encoder_hidden_states", type: F, shape: hidden(T) },
    { name: "pooled_projections", type: F, shape: ["batch_size", 32] },
    { name: "timestep", type: F, shape: ["step"] },
    { name: "txt_ids", type: F, shape: ["sequence_length", 3] },
    { name: "img_ids", type: F, shape: ["packed_height_width", 3] },
  ];
  const fluxOutputs = [
    { name: "out_hidden_states", type: F, shape: ["batch_size", "packed_height_width", 64] },
  ];
  const image = ["batch_size", 16, "height", "width"];
  const projected = (h: number, p: number, layers: number) => [
    { name: "text_embeds", type: F, shape: ["batch_size", p] },
    { name: "last_hidden_state", type: F, shape: hidden(h) },
    ...Array.from({ length: layers + 1 }, (_, i) => ({
      name: `hidden_states.${i}`,
      type: F,
      shape: hidden(h),
    })),
  ];
  const cases: Record<string, Record<string, { inputs: object[]; outputs: object[] }>> = {
    "flux-schnell": {
      text_encoder: {
        inputs: [ids("int32")],
        outputs: [
          { name: "last_hidden_state", type: F, shape: hidden(32) },
          { name: "pooler_output", type: F, shape: ["batch_size", 32] },
        ],
      },
      text_encoder_2: t5,
      transformer: { inputs: fluxInputs, outputs: fluxOutputs },
      vae_decoder: {
        inputs: [
          {
            name: "latent_sample",
            type: F,
            shape: ["batch_size", "num_channels_latent", "height_latent", "width_latent"],
          },
        ],
        outputs: [{ name: "sample", type: F }],
      },
      vae_encoder: {
        inputs: [{ name: "sample", type: F }],
        outputs: [{ name: "latent_parameters", type: F }],
      },
    },
    "flux-dev": {
      transformer: {
        inputs: [...fluxInputs, { name: "guidance", type: F, shape: ["batch_size"] }],
        outputs: fluxOutputs,
      },
    },
    sd3: {
      text_encoder: { inputs: [ids("int32")], outputs: projected(32, 32, 2) },
      text_encoder_2: { inputs: [ids("int32")], outputs: projected(48, 48, 2) },
      text_encoder_3: t5,
      transformer: {
        inputs: [
          { name: "hidden_states", type: F, shape: image },
          { name: "encoder_hidden_states", type: F, shape: hidden(T) },
          { name: "pooled_projections", type: F, shape: ["batch_size", 80] },
          { name: "timestep", type: F, shape: ["step"] },
        ],
        outputs: [{ name: "out_hidden_states", type: F, shape: image }],
      },
    },
  };
  for (const [kind, dirs] of Object.entries(cases)) {
    for (const [dir, io] of Object.entries(dirs)) {
      it(`${kind}/${dir} declares optimum's names, dtypes and dims`, async () => {
        const s = await component(kind, dir);
        expect(s.inputMetadata).toMatchObject(io.inputs);
        expect(s.inputMetadata).toHaveLength(io.inputs.length);
        expect(s.outputMetadata).toMatchObject(io.outputs);
        expect(s.outputMetadata).toHaveLength(io.outputs.length);
      });
    }
  }
});

/** Runs a transformer on `feeds` with one input replaced, returning out_hidden_states. */
async function outHidden(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  return (await s.run(feeds)).out_hidden_states!.data as Float32Array;
}

/** Asserts that changing each named input (to a fresh random tensor of its shape) changes the output. */
async function expectDependsOnEach(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>) {
  const base = await outHidden(s, feeds);
  expect(allFinite(base)).toBe(true);
  // Unit-ish scale, like a velocity prediction: neither vanishing nor exploding.
  const rms = Math.sqrt(base.reduce((a, v) => a + v * v, 0) / base.length);
  expect(rms).toBeGreaterThan(0.1);
  expect(rms).toBeLessThan(10);
  let seed = 100;
  for (const [name, t] of Object.entries(feeds)) {
    const data = t.data as Float32Array;
    const changed = name.endsWith("_ids")
      ? data.map((v, i) => (i % 3 === 1 ? v + 1 : v)) // shift one id axis by one position
      : name === "timestep" || name === "guidance"
        ? data.map((v) => v * 0.5)
        : gaussian(data.length, seed++);
    const other = await outHidden(s, { ...feeds, [name]: f32(changed, [...t.dims]) });
    expect(maxAbsDiff(base, other), name).toBeGreaterThan(1e-3);
  }
}

/** Flux's feeds at batch `b` for an h × w latent (packed 2×2) and a T5 sequence of `seq`, as the pipeline builds them. */
function fluxFeeds(
  b: number,
  h: number,
  w: number,
  seq: number,
  guidance: boolean,
): Record<string, ort.Tensor> {
  const tokens = (h / 2) * (w / 2);
  const imgIds = new Float32Array(tokens * 3);
  for (let i = 0; i < h / 2; i++)
    for (let j = 0; j < w / 2; j++) imgIds.set([0, i, j], (i * (w / 2) + j) * 3);
  return {
    hidden_states: f32(gaussian(b * tokens * 64, 1), [b, tokens, 64]),
    encoder_hidden_states: f32(gaussian(b * seq * T5_TINY.dModel, 2), [b, seq, T5_TINY.dModel]),
    pooled_projections: f32(gaussian(b * 32, 3), [b, 32]),
    timestep: f32(new Float32Array(b).fill(0.75), [b]),
    // Flux's text ids are zeros; nonzero ones here so that changing them is a visible change too.
    txt_ids: f32(gaussian(seq * 3, 4), [seq, 3]),
    img_ids: f32(imgIds, [tokens, 3]),
    ...(guidance ? { guidance: f32(new Float32Array(b).fill(3.5), [b]) } : {}),
  };
}

describe("transformers", () => {
  it("Flux schnell: [B, seq, 64] in and out, dynamic batch, image and text lengths, every input used", async () => {
    const s = await component("flux-schnell", "transformer");
    const out = (await s.run(fluxFeeds(2, 8, 12, 7, false))).out_hidden_states!;
    expect(out.dims).toEqual([2, 24, 64]);
    const other = (await s.run(fluxFeeds(1, 4, 4, 3, false))).out_hidden_states!;
    expect(other.dims).toEqual([1, 4, 64]);
    await expectDependsOnEach(s, fluxFeeds(2, 8, 8, 6, false));
  });

  it("Flux dev: takes guidance [B], and every input changes the output", async () => {
    const s = await component("flux-dev", "transformer");
    await expectDependsOnEach(s, fluxFeeds(1, 8, 8, 6, true));
  });

  it("Flux: one timestep [1] broadcasts over the batch", async () => {
    const s = await component("flux-schnell", "transformer");
    const feeds = fluxFeeds(2, 4, 4, 3, false);
    const one = await outHidden(s, { ...feeds, timestep: f32(Float32Array.of(0.75), [1]) });
    expect(maxAbsDiff(one, await outHidden(s, feeds))).toBeLessThan(1e-6);
  });

  it("SD3: [B, 16, h, w] in and out at any even size, every input used", async () => {
    const s = await component("sd3", "transformer");
    const feeds = (b: number, h: number, w: number, seq: number) => ({
      hidden_states: f32(gaussian(b * 16 * h * w, 1), [b, 16, h, w]),
      encoder_hidden_states: f32(gaussian(b * seq * T5_TINY.dModel, 2), [b, seq, T5_TINY.dModel]),
      pooled_projections: f32(gaussian(b * 80, 3), [b, 80]),
      timestep: f32(new Float32Array(b).fill(750), [b]),
    });
    expect((await s.run(feeds(2, 8, 12, 77 + 5))).out_hidden_states!.dims).toEqual([2, 16, 8, 12]);
    expect((await s.run(feeds(1, 4, 6, 77))).out_hidden_states!.dims).toEqual([1, 16, 4, 6]);
    await expectDependsOnEach(s, feeds(2, 8, 8, 77 + 6));
  });

  it("bench arch: a wider Flux transformer with the same I/O", async () => {
    const bytes = buildFluxTransformer(
      { jointAttentionDim: T5_TINY.dModel, pooledProjectionDim: 32, guidanceEmbeds: false },
      { seed: 0, arch: "bench" },
    );
    const s = await open(bytes);
    expect(s.inputNames).toEqual([
      "hidden_states",
      "encoder_hidden_states",
      "pooled_projections",
      "timestep",
      "txt_ids",
      "img_ids",
    ]);
    const tiny = buildFluxTransformer(
      { jointAttentionDim: T5_TINY.dModel, pooledProjectionDim: 32, guidanceEmbeds: false },
      { seed: 0, arch: "tiny" },
    );
    expect(bytes.length).toBeGreaterThan(20 * tiny.length);
    // 256 × 256 pixels: 32 × 32 latents, 256 packed tokens, with schnell's 256 T5 tokens.
    const feeds = fluxFeeds(1, 32, 32, 256, false);
    const out = (await s.run(feeds)).out_hidden_states!;
    expect(out.dims).toEqual([1, 256, 64]);
  });
});

describe("text encoders", () => {
  const clip = clipVocabulary();
  const clipIds = (words: number[], pad: number) => {
    const ids = new Int32Array(77).fill(pad);
    ids.set([clip.bosId, ...words, clip.eosId]);
    return new ort.Tensor("int32", ids, [1, 77]);
  };

  it("T5: int64 ids of any length to [B, T, d_model]; order matters and pads are attended", async () => {
    const s = await component("flux-schnell", "text_encoder_2");
    const run = async (ids: number[]) =>
      (await s.run({ input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]) }))
        .last_hidden_state!;
    const a = await run([10, 5, 90, 14, 1, 0, 0]);
    expect(a.dims).toEqual([1, 7, T5_TINY.dModel]);
    expect(allFinite(a.data as Float32Array)).toBe(true);
    const swapped = (await run([5, 10, 90, 14, 1, 0, 0])).data as Float32Array;
    // Same tokens, other order: the relative-position bias makes the states differ everywhere.
    expect(maxAbsDiff((a.data as Float32Array).subarray(4 * 96), swapped.subarray(4 * 96))).toBeGreaterThan(
      1e-3,
    );
    expect((await run(Array.from({ length: 512 }, () => 0))).dims).toEqual([1, 512, T5_TINY.dModel]);
  });

  it("SD3's CLIPs give text_embeds and every layer's hidden state; the penultimate is a layer's output", async () => {
    const s = await component("sd3", "text_encoder_2");
    const out = await s.run({ input_ids: clipIds([520, 530], 0) });
    expect(out.text_embeds!.dims).toEqual([1, 48]);
    const [h0, h1, h2] = ["hidden_states.0", "hidden_states.1", "hidden_states.2"].map(
      (n) => out[n]!.data as Float32Array,
    );
    expect(out["hidden_states.1"]!.dims).toEqual([1, 77, 48]);
    expect(maxAbsDiff(h0!, h1!)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(h1!, h2!)).toBeGreaterThan(1e-3);
  });

  it("Flux's CLIP gives the pooled vector the transformer takes", async () => {
    const s = await component("flux-dev", "text_encoder");
    const out = await s.run({ input_ids: clipIds([520], clip.eosId) });
    expect(out.pooler_output!.dims).toEqual([1, 32]);
  });
});

describe("T5 tokenizer", () => {
  it("loads into @huggingface/tokenizers as a Unigram that appends </s> and knows prompt words", async () => {
    const dir = join(root, "flux-schnell", "tokenizer_2");
    const json = await readJson(join(dir, "tokenizer.json"));
    expect(json).toMatchObject({
      model: { type: "Unigram", unk_id: 2 },
      decoder: { type: "Metaspace", replacement: METASPACE, prepend_scheme: "always" },
      post_processor: { type: "TemplateProcessing" },
    });
    const config = await readJson(join(dir, "tokenizer_config.json"));
    expect(config).toMatchObject({
      eos_token: "</s>",
      pad_token: "<pad>",
      unk_token: "<unk>",
      model_max_length: 512,
    });
    const tokenizer = new Tokenizer(
      json as ConstructorParameters<typeof Tokenizer>[0],
      config as ConstructorParameters<typeof Tokenizer>[1],
    );
    const pieces = t5Vocabulary().pieces.map(([p]) => p);
    const id = (p: string) => pieces.indexOf(p);
    const encoded = tokenizer.encode("A photo of a cat.");
    expect(encoded.tokens).toEqual(["▁A", "▁photo", "▁of", "▁a", "▁cat", ".", "</s>"]);
    expect(encoded.ids).toEqual([id("▁A"), id("▁photo"), id("▁of"), id("▁a"), id("▁cat"), id("."), 1]);
    expect(pieces.slice(0, 3)).toEqual(["<pad>", "</s>", "<unk>"]);
    expect(new Set(pieces).size).toBe(pieces.length);
    // Unknown words are spelled out; characters outside the vocabulary are <unk> (no byte fallback).
    const rare = tokenizer.encode("quokka ☃");
    expect(rare.ids.at(-1)).toBe(1);
    expect(rare.ids).toContain(2);
    expect(rare.ids.every((i: number) => i >= 0 && i < pieces.length)).toBe(true);
    expect(tokenizer.decode(encoded.ids, { skip_special_tokens: true })).toBe("A photo of a cat.");
    expect(await readFile(join(root, "sd3", "tokenizer_3", "tokenizer.json"), "utf8")).toBe(
      await readFile(join(dir, "tokenizer.json"), "utf8"),
    );
  });
});
