import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { float16ToFloat32, float32ToFloat16 } from "@hybrid/protocol";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PIPELINES, generateDefaultPipelines, generatePipelineModel } from "./pipeline-generator.ts";
import { mulberry32 } from "./prng.ts";
import { buildTextEncoder, CLIP_TEXT_TINY } from "./text-encoder-models.ts";
import { clipVocabulary } from "./tokenizer-files.ts";
import { buildUnet, type TimestepDtype, type TimestepShape } from "./unet-models.ts";

let root: string;
/** `n` standard normal samples (Box–Muller) from a seeded stream: inputs for the graphs. */
function gaussian(n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

const sessions: ort.InferenceSession[] = [];

async function open(model: string | Uint8Array): Promise<ort.InferenceSession> {
  const s =
    typeof model === "string"
      ? await ort.InferenceSession.create(model, { intraOpNumThreads: 1 })
      : await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  sessions.push(s);
  return s;
}

const component = (id: string, dir: string) => open(join(root, id, dir, "model.onnx"));
const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
const allFinite = (data: ArrayLike<number>) => Array.from(data).every(Number.isFinite);
const maxAbsDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

const vocab = clipVocabulary();
/** [bos, a few word ids, eos, then pad to 77], as CLIPTokenizer(padding="max_length") returns. */
function promptIds(words: number[], pad = vocab.eosId): Int32Array {
  const ids = new Int32Array(77).fill(pad);
  ids.set([vocab.bosId, ...words, vocab.eosId]);
  return ids;
}

/** Feeds for a UNet at batch 2 (classifier-free guidance) on an h × w latent, float32 I/O. */
function unetFeeds(
  o: { h?: number; w?: number; cross: number; seed?: number; timestep?: ort.Tensor },
  extra: Record<string, ort.Tensor> = {},
): Record<string, ort.Tensor> {
  const h = o.h ?? 32;
  const w = o.w ?? 32;
  return {
    sample: new ort.Tensor("float32", gaussian(2 * 4 * h * w, 1), [2, 4, h, w]),
    timestep: o.timestep ?? new ort.Tensor("float32", new Float32Array([999]), [1]),
    encoder_hidden_states: new ort.Tensor("float32", gaussian(2 * 77 * o.cross, o.seed ?? 2), [
      2,
      77,
      o.cross,
    ]),
    ...extra,
  };
}

async function outSample(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const out = (await s.run(feeds)).out_sample!;
  return out.type === "float16" ? float16ToFloat32(out.data as Uint16Array) : (out.data as Float32Array);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "pipeline-generator-"));
  await generateDefaultPipelines(root);
});

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.release()));
  if (root) await rm(root, { recursive: true, force: true });
});

const TOKENIZER_FILES = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"];
const COMMON_FILES = [
  "model_index.json",
  "scheduler/scheduler_config.json",
  ...TOKENIZER_FILES.map((f) => `tokenizer/${f}`),
  "text_encoder/config.json",
  "text_encoder/model.onnx",
  "unet/config.json",
  "unet/model.onnx",
  "vae_decoder/config.json",
  "vae_decoder/model.onnx",
  "vae_encoder/config.json",
  "vae_encoder/model.onnx",
];

describe("generateDefaultPipelines", () => {
  it("writes optimum's directory layout for every default pipeline", async () => {
    expect(DEFAULT_PIPELINES.map((p) => p.id)).toEqual([
      "sd-tiny",
      "sdxl-pipe-tiny",
      "lcm-tiny",
      "flux-schnell-tiny",
      "flux-dev-tiny",
      "sd3-tiny",
    ]);
    expect(await listFiles(join(root, "sd-tiny"))).toEqual([...COMMON_FILES].sort());
    expect(await listFiles(join(root, "lcm-tiny"))).toEqual([...COMMON_FILES].sort());
    expect(await listFiles(join(root, "sdxl-pipe-tiny"))).toEqual(
      [
        ...COMMON_FILES,
        "text_encoder_2/config.json",
        "text_encoder_2/model.onnx",
        ...TOKENIZER_FILES.map((f) => `tokenizer_2/${f}`),
      ].sort(),
    );
  });

  it("writes model_index.json with diffusers' component entries and the generator fingerprint", async () => {
    const sd = await readJson(join(root, "sd-tiny", "model_index.json"));
    expect(sd).toMatchObject({
      _class_name: "StableDiffusionPipeline",
      _hybrid_family: "sd-v1",
      _hybrid_generator: {
        kind: "sd-v1",
        seed: 0,
        timestepDtype: "float32",
        idsDtype: "int32",
        ioDtype: "float32",
      },
      scheduler: ["diffusers", "PNDMScheduler"],
      text_encoder: ["transformers", "CLIPTextModel"],
      tokenizer: ["transformers", "CLIPTokenizer"],
      unet: ["diffusers", "UNet2DConditionModel"],
      vae: ["diffusers", "AutoencoderKL"],
      safety_checker: [null, null],
    });
    expect(sd).not.toHaveProperty("text_encoder_2");
    expect(await readJson(join(root, "sdxl-pipe-tiny", "model_index.json"))).toMatchObject({
      _class_name: "StableDiffusionXLPipeline",
      _hybrid_family: "sdxl",
      _hybrid_generator: { kind: "sdxl", ioDtype: "float16" },
      scheduler: ["diffusers", "EulerDiscreteScheduler"],
      text_encoder: ["transformers", "CLIPTextModel"],
      text_encoder_2: ["transformers", "CLIPTextModelWithProjection"],
      tokenizer_2: ["transformers", "CLIPTokenizer"],
      force_zeros_for_empty_prompt: true,
    });
    expect(await readJson(join(root, "lcm-tiny", "model_index.json"))).toMatchObject({
      _class_name: "LatentConsistencyModelPipeline",
      _hybrid_family: "sd-v1",
      scheduler: ["diffusers", "LCMScheduler"],
    });
  });

  it("writes the real schedulers' configs", async () => {
    const betas = {
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      num_train_timesteps: 1000,
      steps_offset: 1,
      prediction_type: "epsilon",
      timestep_spacing: "leading",
      clip_sample: false,
    };
    expect(await readJson(join(root, "sd-tiny", "scheduler", "scheduler_config.json"))).toMatchObject({
      _class_name: "PNDMScheduler",
      ...betas,
      set_alpha_to_one: false,
      skip_prk_steps: true,
    });
    expect(await readJson(join(root, "sdxl-pipe-tiny", "scheduler", "scheduler_config.json"))).toMatchObject({
      _class_name: "EulerDiscreteScheduler",
      ...betas,
      interpolation_type: "linear",
      use_karras_sigmas: false,
    });
    expect(await readJson(join(root, "lcm-tiny", "scheduler", "scheduler_config.json"))).toMatchObject({
      _class_name: "LCMScheduler",
      ...betas,
      original_inference_steps: 50,
    });
  });

  it("writes configs that agree with the graphs and the family's VAE scaling", async () => {
    for (const id of ["sd-tiny", "lcm-tiny", "sdxl-pipe-tiny"]) {
      const te = await readJson(join(root, id, "text_encoder", "config.json"));
      expect(te).toMatchObject({
        hidden_size: 32,
        max_position_embeddings: 77,
        vocab_size: vocab.tokens.length,
      });
      expect(te.eos_token_id).toBe(vocab.eosId);
    }
    expect(await readJson(join(root, "sd-tiny", "unet", "config.json"))).toMatchObject({
      in_channels: 4,
      out_channels: 4,
      cross_attention_dim: 32,
      addition_embed_type: null,
      time_cond_proj_dim: null,
    });
    expect(await readJson(join(root, "lcm-tiny", "unet", "config.json"))).toMatchObject({
      time_cond_proj_dim: 256,
    });
    expect(await readJson(join(root, "sdxl-pipe-tiny", "text_encoder_2", "config.json"))).toMatchObject({
      hidden_size: 48,
      projection_dim: 40,
      pad_token_id: 0,
    });
    expect(await readJson(join(root, "sdxl-pipe-tiny", "unet", "config.json"))).toMatchObject({
      cross_attention_dim: 80,
      addition_embed_type: "text_time",
      addition_time_embed_dim: 8,
      projection_class_embeddings_input_dim: 40 + 6 * 8,
    });
    for (const [id, scaling] of [
      ["sd-tiny", 0.18215],
      ["lcm-tiny", 0.18215],
      ["sdxl-pipe-tiny", 0.13025],
    ] as const) {
      for (const dir of ["vae_decoder", "vae_encoder"]) {
        expect((await readJson(join(root, id, dir, "config.json"))).scaling_factor).toBe(scaling);
      }
    }
  });

  it("leaves up-to-date pipelines alone and rewrites them when forced", async () => {
    const inode = async () => (await stat(join(root, "sd-tiny", "unet", "model.onnx"))).ino;
    const before = await inode();
    await generateDefaultPipelines(root);
    expect(await inode()).toBe(before);
    await generateDefaultPipelines(root, { force: true });
    expect(await inode()).not.toBe(before);
  });
});

describe("session layout", () => {
  const f32 = "float32";
  const image = ["batch_size", 4, "height", "width"];
  const ids = { name: "input_ids", type: "int32", shape: ["batch_size", "sequence_length"] };
  const hidden = (n: number) => ["batch_size", "sequence_length", n];
  const cases: Record<string, Record<string, { inputs: object[]; outputs: object[] }>> = {
    "sd-tiny": {
      text_encoder: {
        inputs: [ids],
        outputs: [
          { name: "last_hidden_state", type: f32, shape: hidden(32) },
          { name: "pooler_output", type: f32, shape: ["batch_size", 32] },
        ],
      },
      unet: {
        inputs: [
          { name: "sample", type: f32, shape: image },
          { name: "timestep", type: f32, shape: ["steps"] },
          { name: "encoder_hidden_states", type: f32, shape: hidden(32) },
        ],
        outputs: [{ name: "out_sample", type: f32, shape: image }],
      },
      vae_decoder: {
        inputs: [{ name: "latent_sample", type: f32 }],
        outputs: [{ name: "sample", type: f32 }],
      },
      vae_encoder: {
        inputs: [{ name: "sample", type: f32 }],
        outputs: [{ name: "latent_parameters", type: f32 }],
      },
    },
    "sdxl-pipe-tiny": {
      text_encoder: {
        inputs: [ids],
        outputs: [{ name: "last_hidden_state", shape: hidden(32) }, { name: "pooler_output" }],
      },
      text_encoder_2: {
        inputs: [ids],
        outputs: [
          { name: "text_embeds", type: f32, shape: ["batch_size", 40] },
          { name: "last_hidden_state", type: f32, shape: hidden(48) },
        ],
      },
      unet: {
        inputs: [
          { name: "sample", type: "float16", shape: image },
          { name: "timestep", type: f32, shape: ["steps"] },
          { name: "encoder_hidden_states", type: "float16", shape: hidden(80) },
          { name: "text_embeds", type: "float16", shape: ["batch_size", 40] },
          { name: "time_ids", type: "float16", shape: ["batch_size", 6] },
        ],
        outputs: [{ name: "out_sample", type: "float16", shape: image }],
      },
      vae_decoder: {
        inputs: [{ name: "latent_sample", type: "float16" }],
        outputs: [{ name: "sample", type: "float16" }],
      },
      vae_encoder: {
        inputs: [{ name: "sample", type: "float16" }],
        outputs: [{ name: "latent_sample", type: "float16" }],
      },
    },
    "lcm-tiny": {
      unet: {
        inputs: [
          { name: "sample", type: f32, shape: image },
          { name: "timestep", type: f32, shape: ["steps"] },
          { name: "encoder_hidden_states", type: f32, shape: hidden(32) },
          { name: "timestep_cond", type: f32, shape: ["batch_size", 256] },
        ],
        outputs: [{ name: "out_sample", type: f32, shape: image }],
      },
    },
  };
  for (const [id, dirs] of Object.entries(cases)) {
    for (const [dir, io] of Object.entries(dirs)) {
      it(`${id}/${dir} declares optimum's names, dtypes and dims`, async () => {
        const s = await component(id, dir);
        expect(s.inputMetadata).toMatchObject(io.inputs);
        expect(s.inputMetadata).toHaveLength(io.inputs.length);
        expect(s.outputMetadata).toMatchObject(io.outputs);
        expect(s.outputMetadata).toHaveLength(io.outputs.length);
      });
    }
  }
});

describe("text encoders", () => {
  it("encode [bos, words, eos, pad...] to finite [1, 77, hidden] and pool at the eos token", async () => {
    const s = await component("sd-tiny", "text_encoder");
    const ids = promptIds([520, 530, 300]);
    const out = await s.run({ input_ids: new ort.Tensor("int32", ids, [1, 77]) });
    const last = out.last_hidden_state!;
    expect(last.dims).toEqual([1, 77, 32]);
    expect(allFinite(last.data as Float32Array)).toBe(true);
    const pooled = out.pooler_output!.data as Float32Array;
    const eosAt = 4;
    expect(Array.from(pooled)).toEqual(
      Array.from((last.data as Float32Array).subarray(eosAt * 32, eosAt * 32 + 32)),
    );
  });

  it("are causal: tokens after a position do not change its hidden state", async () => {
    const s = await component("sd-tiny", "text_encoder");
    const run = async (ids: Int32Array) =>
      (await s.run({ input_ids: new ort.Tensor("int32", ids, [1, 77]) })).last_hidden_state!
        .data as Float32Array;
    const a = await run(promptIds([520, 530]));
    const b = await run(promptIds([520, 531]));
    expect(maxAbsDiff(a.subarray(0, 2 * 32), b.subarray(0, 2 * 32))).toBe(0);
    expect(maxAbsDiff(a.subarray(2 * 32), b.subarray(2 * 32))).toBeGreaterThan(1e-3);
  });

  it("SDXL's text_encoder_2 gives text_embeds and accepts its '!' padding and short sequences", async () => {
    const s = await component("sdxl-pipe-tiny", "text_encoder_2");
    const out = await s.run({ input_ids: new ort.Tensor("int32", promptIds([520, 530], 0), [1, 77]) });
    expect(out.text_embeds!.dims).toEqual([1, 40]);
    expect(out.last_hidden_state!.dims).toEqual([1, 77, 48]);
    expect(allFinite(out.text_embeds!.data as Float32Array)).toBe(true);
    const short = Int32Array.from([vocab.bosId, 520, vocab.eosId, vocab.bosId, 530, vocab.eosId]);
    const batch = await s.run({ input_ids: new ort.Tensor("int32", short, [2, 3]) });
    expect(batch.last_hidden_state!.dims).toEqual([2, 3, 48]);
  });

  it("can declare int64 input_ids", async () => {
    const s = await open(buildTextEncoder(CLIP_TEXT_TINY, { idsDtype: "int64", seed: 0 }));
    expect(s.inputMetadata[0]).toMatchObject({ name: "input_ids", type: "int64" });
    const ids = BigInt64Array.from(promptIds([520]), (v) => BigInt(v));
    const out = await s.run({ input_ids: new ort.Tensor("int64", ids, [1, 77]) });
    expect(out.last_hidden_state!.dims).toEqual([1, 77, 32]);
  });
});

describe("unet", () => {
  const spec = { crossAttentionDim: 32 };
  // "steps" is fed both ways pipelines do: one timestep for the batch, or one per batch element.
  const timesteps: Record<TimestepShape, number[][]> = { steps: [[1], [2]], one: [[1]], scalar: [[]] };
  for (const dtype of ["float32", "int64", "float16"] satisfies TimestepDtype[]) {
    for (const shape of ["steps", "one", "scalar"] satisfies TimestepShape[]) {
      it(`runs batch 2 at 32×32 with a ${dtype} timestep declared as ${shape}`, async () => {
        const s = await open(
          buildUnet(spec, { timestepDtype: dtype, timestepShape: shape, ioDtype: "float32", seed: 0 }),
        );
        const meta = s.inputMetadata.find((m) => m.name === "timestep");
        expect(meta).toMatchObject({
          type: dtype,
          shape: shape === "steps" ? ["steps"] : shape === "one" ? [1] : [],
        });
        for (const dims of timesteps[shape]) {
          const n = dims[0] ?? 1;
          const values = Array.from({ length: n }, () => 500);
          const t =
            dtype === "int64"
              ? new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims)
              : dtype === "float16"
                ? new ort.Tensor("float16", float32ToFloat16(Float32Array.from(values)), dims)
                : new ort.Tensor("float32", Float32Array.from(values), dims);
          const out = (await s.run(unetFeeds({ cross: 32, timestep: t }))).out_sample!;
          expect(out.dims).toEqual([2, 4, 32, 32]);
          expect(allFinite(out.data as Float32Array)).toBe(true);
        }
      });
    }
  }

  it("depends on the prompt, the timestep and the sample", async () => {
    const s = await component("sd-tiny", "unet");
    const base = await outSample(s, unetFeeds({ cross: 32 }));
    const otherPrompt = await outSample(s, unetFeeds({ cross: 32, seed: 9 }));
    const otherTime = await outSample(
      s,
      unetFeeds({ cross: 32, timestep: new ort.Tensor("float32", new Float32Array([400]), [1]) }),
    );
    expect(maxAbsDiff(base, otherPrompt)).toBeGreaterThan(0.05);
    expect(maxAbsDiff(base, otherTime)).toBeGreaterThan(0.05);
    // The two halves of the CFG batch get different prompts and different samples.
    expect(maxAbsDiff(base.subarray(0, base.length / 2), base.subarray(base.length / 2))).toBeGreaterThan(
      0.05,
    );
  });

  it("accepts any latent size, odd ones included", async () => {
    const s = await component("sd-tiny", "unet");
    const out = (await s.run(unetFeeds({ cross: 32, h: 9, w: 13 }))).out_sample!;
    expect(out.dims).toEqual([2, 4, 9, 13]);
    expect(allFinite(out.data as Float32Array)).toBe(true);
  });

  it("SDXL: float16 I/O, and text_embeds and time_ids steer the output", async () => {
    const s = await component("sdxl-pipe-tiny", "unet");
    const half = (data: Float32Array, dims: number[]) =>
      new ort.Tensor("float16", float32ToFloat16(data), dims);
    const feeds = (sizes: number[], textSeed: number) => ({
      sample: half(gaussian(2 * 4 * 32 * 32, 1), [2, 4, 32, 32]),
      timestep: new ort.Tensor("float32", new Float32Array([999]), [1]),
      encoder_hidden_states: half(gaussian(2 * 77 * 80, 2), [2, 77, 80]),
      text_embeds: half(gaussian(2 * 40, textSeed), [2, 40]),
      time_ids: half(Float32Array.from([...sizes, ...sizes]), [2, 6]),
    });
    const out = (await s.run(feeds([256, 256, 0, 0, 256, 256], 3))).out_sample!;
    expect(out.type).toBe("float16");
    expect(out.dims).toEqual([2, 4, 32, 32]);
    const base = float16ToFloat32(out.data as Uint16Array);
    expect(allFinite(base)).toBe(true);
    expect(maxAbsDiff(base, await outSample(s, feeds([256, 256, 0, 0, 256, 256], 4)))).toBeGreaterThan(0.05);
    expect(maxAbsDiff(base, await outSample(s, feeds([512, 512, 0, 0, 256, 256], 3)))).toBeGreaterThan(0.05);
  });

  it("LCM: timestep_cond steers the output", async () => {
    const s = await component("lcm-tiny", "unet");
    const cond = (seed: number) => ({
      timestep_cond: new ort.Tensor("float32", gaussian(2 * 256, seed), [2, 256]),
    });
    const a = await outSample(s, unetFeeds({ cross: 32 }, cond(5)));
    const b = await outSample(s, unetFeeds({ cross: 32 }, cond(6)));
    expect(allFinite(a)).toBe(true);
    expect(maxAbsDiff(a, b)).toBeGreaterThan(0.05);
  });

  it("stays finite and O(1) through a crude 50-step loop (x -= 0.05 · unet(x))", async () => {
    const s = await component("sd-tiny", "unet");
    const feeds = unetFeeds({ cross: 32 });
    let x = feeds.sample!.data as Float32Array;
    for (let step = 0; step < 50; step++) {
      const t = new ort.Tensor("float32", new Float32Array([999 - step * 20]), [1]);
      const eps = await outSample(s, {
        ...feeds,
        sample: new ort.Tensor("float32", x, [2, 4, 32, 32]),
        timestep: t,
      });
      expect(allFinite(eps)).toBe(true);
      expect(Math.max(...eps.map(Math.abs))).toBeLessThan(20);
      x = x.map((v, i) => v - 0.05 * eps[i]!);
    }
    expect(allFinite(x)).toBe(true);
    expect(Math.max(...x.map(Math.abs))).toBeLessThan(100);
  });

  it("stays finite through a 50-step Euler-discrete loop on SD's scaled_linear sigmas", async () => {
    const s = await component("sd-tiny", "unet");
    const feeds = unetFeeds({ cross: 32 });
    // alphas_cumprod of beta_start 0.00085, beta_end 0.012, scaled_linear over 1000 steps.
    const cumprod: number[] = [];
    let prod = 1;
    for (let i = 0; i < 1000; i++) {
      const beta = (Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2;
      prod *= 1 - beta;
      cumprod.push(prod);
    }
    const ts = Array.from({ length: 50 }, (_, i) => 999 - i * 20);
    const sigma = (t: number) => Math.sqrt((1 - cumprod[t]!) / cumprod[t]!);
    let x = (feeds.sample!.data as Float32Array).map((v) => v * sigma(ts[0]!));
    for (let i = 0; i < ts.length; i++) {
      const sig = sigma(ts[i]!);
      const next = i + 1 < ts.length ? sigma(ts[i + 1]!) : 0;
      const scaled = x.map((v) => v / Math.sqrt(sig * sig + 1));
      const eps = await outSample(s, {
        ...feeds,
        sample: new ort.Tensor("float32", scaled, [2, 4, 32, 32]),
        timestep: new ort.Tensor("float32", new Float32Array([ts[i]!]), [1]),
      });
      x = x.map((v, j) => v + (next - sig) * eps[j]!);
    }
    expect(allFinite(x)).toBe(true);
    expect(Math.max(...x.map(Math.abs))).toBeLessThan(100);
  });

  it("takes a few milliseconds per call at batch 2, 32×32 on one CPU thread", async () => {
    const s = await component("sd-tiny", "unet");
    const feeds = unetFeeds({ cross: 32 });
    for (let i = 0; i < 3; i++) await s.run(feeds);
    const runs = 10;
    const start = performance.now();
    for (let i = 0; i < runs; i++) await s.run(feeds);
    expect((performance.now() - start) / runs).toBeLessThan(200);
  });
});

describe("determinism", () => {
  it("the same options give byte-identical directories; another seed changes only the weights", async () => {
    const dirs = await Promise.all([0, 1, 2].map(() => mkdtemp(join(tmpdir(), "pipeline-determinism-"))));
    try {
      const [a, b, c] = dirs as [string, string, string];
      await generatePipelineModel({ kind: "sdxl", outDir: a, seed: 7 });
      await generatePipelineModel({ kind: "sdxl", outDir: b, seed: 7 });
      await generatePipelineModel({ kind: "sdxl", outDir: c, seed: 8 });
      const files = await listFiles(a);
      expect(await listFiles(b)).toEqual(files);
      for (const f of files) {
        expect((await readFile(join(b, f))).equals(await readFile(join(a, f))), f).toBe(true);
      }
      for (const f of ["unet/model.onnx", "text_encoder/model.onnx", "text_encoder_2/model.onnx"]) {
        expect((await readFile(join(c, f))).equals(await readFile(join(a, f))), f).toBe(false);
      }
      const vocabOf = (d: string) => readFile(join(d, "tokenizer/vocab.json"));
      expect((await vocabOf(c)).equals(await vocabOf(a))).toBe(true);
    } finally {
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
    }
  });

  it("regenerating a directory as another kind removes the components that kind lacks", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pipeline-kind-"));
    try {
      await generatePipelineModel({ kind: "sdxl", outDir: dir });
      await generatePipelineModel({ kind: "sd-v1", outDir: dir });
      expect(await listFiles(dir)).toEqual([...COMMON_FILES].sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("tokenizer files", () => {
  const tokenizerDir = (id: string, dir = "tokenizer") => join(root, id, dir);

  it("vocab.json has unique, contiguous ids with the special tokens last", async () => {
    const v = await readJson(join(tokenizerDir("sd-tiny"), "vocab.json"));
    const ids = Object.values(v) as number[];
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids.map((_, i) => i));
    expect(ids.length).toBeGreaterThan(512);
    expect(ids.length).toBeLessThan(1000);
    expect(v["<|startoftext|>"]).toBe(ids.length - 2);
    expect(v["<|endoftext|>"]).toBe(ids.length - 1);
    expect(v["!"]).toBe(0);
    expect(v["!</w>"]).toBe(256);
    expect(v).toHaveProperty("Ġ");
  });

  it("merges.txt is CLIP's format and every merge joins vocabulary tokens into the next id", async () => {
    const v = (await readJson(join(tokenizerDir("sd-tiny"), "vocab.json"))) as Record<string, number>;
    const lines = (await readFile(join(tokenizerDir("sd-tiny"), "merges.txt"), "utf8")).split("\n");
    expect(lines[0]).toBe("#version: 0.2");
    const merges = lines.slice(1).filter((l) => l !== "");
    expect(merges.length).toBe(Object.keys(v).length - 512 - 2);
    merges.forEach((line, i) => {
      const parts = line.split(" ");
      expect(parts).toHaveLength(2);
      expect(v[parts[0]!], line).toBeDefined();
      expect(v[parts[1]!], line).toBeDefined();
      expect(v[parts.join("")], line).toBe(512 + i);
    });
  });

  it("tokenizer_config.json and special_tokens_map.json carry CLIP's settings; SDXL's second pads with '!'", async () => {
    expect(await readJson(join(tokenizerDir("sd-tiny"), "tokenizer_config.json"))).toMatchObject({
      model_max_length: 77,
      bos_token: "<|startoftext|>",
      eos_token: "<|endoftext|>",
      unk_token: "<|endoftext|>",
      pad_token: "<|endoftext|>",
      do_lower_case: true,
      tokenizer_class: "CLIPTokenizer",
    });
    expect(await readJson(join(tokenizerDir("sd-tiny"), "special_tokens_map.json"))).toMatchObject({
      bos_token: { content: "<|startoftext|>" },
      eos_token: { content: "<|endoftext|>" },
      pad_token: "<|endoftext|>",
    });
    expect(
      await readJson(join(tokenizerDir("sdxl-pipe-tiny", "tokenizer_2"), "tokenizer_config.json")),
    ).toMatchObject({ pad_token: "!", model_max_length: 77 });
    expect(
      await readJson(join(tokenizerDir("sdxl-pipe-tiny", "tokenizer_2"), "special_tokens_map.json")),
    ).toMatchObject({ pad_token: "!" });
  });

  it("loads into @huggingface/tokenizers as a CLIP BPE and tokenizes common words whole", async () => {
    const dir = tokenizerDir("sd-tiny");
    const v = (await readJson(join(dir, "vocab.json"))) as Record<string, number>;
    const merges = (await readFile(join(dir, "merges.txt"), "utf8")).split("\n").slice(1).filter(Boolean);
    const special = (id: number, content: string) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: true,
      special: true,
    });
    // The tokenizer.json transformers derives for CLIPTokenizerFast from these four files.
    const tokenizerJson: ConstructorParameters<typeof Tokenizer>[0] = {
      added_tokens: [special(vocab.bosId, "<|startoftext|>"), special(vocab.eosId, "<|endoftext|>")],
      normalizer: {
        type: "Sequence",
        normalizers: [
          { type: "NFC" },
          { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
          { type: "Lowercase" },
        ],
      },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          {
            type: "Split",
            pattern: {
              Regex:
                "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
            },
            behavior: "Removed",
            invert: true,
          },
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: {
        type: "RobertaProcessing",
        sep: ["<|endoftext|>", vocab.eosId],
        cls: ["<|startoftext|>", vocab.bosId],
        trim_offsets: false,
        add_prefix_space: false,
      },
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: "<|endoftext|>",
        end_of_word_suffix: "</w>",
        fuse_unk: false,
        byte_fallback: false,
        vocab: v,
        merges,
      },
    };
    const config = (await readJson(join(dir, "tokenizer_config.json"))) as ConstructorParameters<
      typeof Tokenizer
    >[1];
    const tokenizer = new Tokenizer(tokenizerJson, config);
    const encoded = tokenizer.encode("A photo of a CAT");
    expect(encoded.ids).toEqual([
      vocab.bosId,
      v["a</w>"],
      v["photo</w>"],
      v["of</w>"],
      v["a</w>"],
      v["cat</w>"],
      vocab.eosId,
    ]);
    // A word outside the corpus still tokenizes, into pieces that are all in the vocabulary.
    const rare = tokenizer.encode("zyxwv quokka!");
    expect(rare.ids.every((id: number) => id >= 0 && id < vocab.tokens.length)).toBe(true);
    expect(rare.ids.length).toBeGreaterThan(4);
  });
});
