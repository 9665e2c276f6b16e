import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateDefaultModels } from "./default-models.ts";
import { DEFAULT_PIPELINES } from "./pipeline-generator.ts";
import { DEFAULT_MODELS, generateVaeModel } from "./vae-generator.ts";

let root: string;
const sessions: ort.InferenceSession[] = [];

async function open(path: string): Promise<ort.InferenceSession> {
  const s = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
  sessions.push(s);
  return s;
}

const decoderOf = (id: string) => open(join(root, id, "vae_decoder", "model.onnx"));
const encoderOf = (id: string) => open(join(root, id, "vae_encoder", "model.onnx"));
const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;

/** Deterministic inputs, so the range assertions below cannot flake. */
function pseudoRandom(n: number, seed: number, amplitude = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 2 * amplitude;
  }
  return out;
}

/** float32 -> IEEE half bits (round-to-nearest on the mantissa; no subnormals needed here). */
function toHalf(values: Float32Array): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return Uint16Array.from(values, (v) => {
    f[0] = v;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 127 + 15;
    if (exp <= 0) return sign;
    if (exp >= 31) return sign | 0x7c00;
    return sign | ((exp << 10) + (((x & 0x7fffff) + 0x1000) >>> 13));
  });
}

function fromHalf(bits: Uint16Array): Float32Array {
  return Float32Array.from(bits, (h) => {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    if (exp === 0) return sign * mant * 2 ** -24;
    return sign * (1 + mant / 1024) * 2 ** (exp - 15);
  });
}

const allFinite = (data: ArrayLike<number>) => Array.from(data).every(Number.isFinite);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "vae-generator-"));
  await generateDefaultModels(root);
});

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.release()));
  if (root) await rm(root, { recursive: true, force: true });
});

describe("generateDefaultModels", () => {
  it("writes optimum's layout with diffusers configs for every default model", async () => {
    expect(DEFAULT_MODELS.map((m) => m.id)).toEqual([
      "sd-v1-tiny",
      "sdxl-tiny",
      "flux-tiny",
      "hunyuan-video-tiny",
    ]);
    const expected = {
      "sd-v1-tiny": {
        cls: "StableDiffusionPipeline",
        vae: "AutoencoderKL",
        family: "sd-v1",
        C: 4,
        scaling: 0.18215,
        shift: null,
      },
      "sdxl-tiny": {
        cls: "StableDiffusionXLPipeline",
        vae: "AutoencoderKL",
        family: "sdxl",
        C: 4,
        scaling: 0.13025,
        shift: null,
      },
      "flux-tiny": {
        cls: "FluxPipeline",
        vae: "AutoencoderKL",
        family: "flux",
        C: 16,
        scaling: 0.3611,
        shift: 0.1159,
      },
      "hunyuan-video-tiny": {
        cls: "HunyuanVideoPipeline",
        vae: "AutoencoderKLHunyuanVideo",
        family: "hunyuan-video",
        C: 16,
        scaling: 0.476986,
        shift: null,
      },
    };
    for (const [id, e] of Object.entries(expected)) {
      const index = await readJson(join(root, id, "model_index.json"));
      expect(index).toMatchObject({ _class_name: e.cls, _hybrid_family: e.family });
      const config = await readJson(join(root, id, "vae_decoder", "config.json"));
      expect(config).toMatchObject({
        _class_name: e.vae,
        latent_channels: e.C,
        in_channels: 3,
        out_channels: 3,
        scaling_factor: e.scaling,
        shift_factor: e.shift,
      });
      expect(config.block_out_channels).toHaveLength(4);
      const video = e.family === "hunyuan-video";
      if (video)
        expect(config).toMatchObject({ temporal_compression_ratio: 4, spatial_compression_ratio: 8 });
      const encoderConfig = join(root, id, "vae_encoder", "config.json");
      if (video) {
        await expect(stat(join(root, id, "vae_encoder"))).rejects.toThrow();
      } else {
        expect(await readJson(encoderConfig)).toEqual(config);
      }
    }
  });

  it("skips models that are already generated unless forced", async () => {
    const path = join(root, "sd-v1-tiny", "vae_decoder", "model.onnx");
    const before = (await stat(path)).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    expect(await generateDefaultModels(root)).toEqual([
      ...DEFAULT_MODELS.map((m) => m.id),
      ...DEFAULT_PIPELINES.map((p) => p.id),
    ]);
    expect((await stat(path)).mtimeMs).toBe(before);
    await generateDefaultModels(root, { force: true });
    expect((await stat(path)).mtimeMs).toBeGreaterThan(before);
  });
});

describe("image decoders", () => {
  for (const [id, C] of [
    ["sd-v1-tiny", 4],
    ["flux-tiny", 16],
  ] as const) {
    it(`${id}: latent_sample [B,C,h,w] -> sample [B,3,8h,8w] for non-square dynamic shapes`, async () => {
      const s = await decoderOf(id);
      expect(s.inputNames).toEqual(["latent_sample"]);
      expect(s.outputNames).toEqual(["sample"]);
      expect(s.inputMetadata[0]).toMatchObject({
        name: "latent_sample",
        type: "float32",
        shape: ["batch_size", "num_channels_latent", "height_latent", "width_latent"],
      });
      expect(s.outputMetadata[0]).toMatchObject({
        name: "sample",
        shape: ["batch_size", 3, "height", "width"],
      });

      const out = (
        await s.run({ latent_sample: new ort.Tensor("float32", pseudoRandom(2 * C * 24, 1), [2, C, 4, 6]) })
      ).sample!;
      expect(out.dims).toEqual([2, 3, 32, 48]);
      expect(out.type).toBe("float32");
      expect(allFinite(out.data as Float32Array)).toBe(true);

      const other = (
        await s.run({ latent_sample: new ort.Tensor("float32", pseudoRandom(C * 35, 2), [1, C, 7, 5]) })
      ).sample!;
      expect(other.dims).toEqual([1, 3, 56, 40]);
    });
  }

  it("outputs lie mostly in [-1, 1], with some values just outside for clamping to handle", async () => {
    const s = await decoderOf("sd-v1-tiny");
    const out = (
      await s.run({ latent_sample: new ort.Tensor("float32", pseudoRandom(4 * 256, 3, 3), [1, 4, 16, 16]) })
    ).sample!.data as Float32Array;
    const outside = out.filter((v) => Math.abs(v) > 1).length / out.length;
    expect(outside).toBeGreaterThan(0);
    expect(outside).toBeLessThan(0.2);
    expect(Math.max(...out.map(Math.abs))).toBeLessThanOrEqual(1.2);
  });

  it("sdxl-tiny has float16 I/O and accepts a Uint16Array tensor", async () => {
    const s = await decoderOf("sdxl-tiny");
    expect(s.inputMetadata[0]).toMatchObject({ name: "latent_sample", type: "float16" });
    const latent = new ort.Tensor("float16", toHalf(pseudoRandom(2 * 4 * 24, 4)), [2, 4, 4, 6]);
    const out = (await s.run({ latent_sample: latent })).sample!;
    expect(out.type).toBe("float16");
    expect(out.dims).toEqual([2, 3, 32, 48]);
    expect(out.data).toBeInstanceOf(Uint16Array);
    expect(allFinite(fromHalf(out.data as Uint16Array))).toBe(true);
  });
});

describe("image encoders", () => {
  const cases = [
    { id: "sd-v1-tiny", output: "latent_parameters", channels: 8, dtype: "float32" },
    { id: "flux-tiny", output: "latent_parameters", channels: 32, dtype: "float32" },
    { id: "sdxl-tiny", output: "latent_sample", channels: 4, dtype: "float16" },
  ] as const;
  for (const c of cases) {
    it(`${c.id}: sample [B,3,H,W] -> ${c.output} [B,${c.channels},H/8,W/8]`, async () => {
      const s = await encoderOf(c.id);
      expect(s.inputNames).toEqual(["sample"]);
      expect(s.outputNames).toEqual([c.output]);
      expect(s.inputMetadata[0]).toMatchObject({
        type: c.dtype,
        shape: ["batch_size", 3, "height", "width"],
      });
      expect(s.outputMetadata[0]).toMatchObject({
        shape: ["batch_size", c.channels, "height_latent", "width_latent"],
      });
      const pixels = pseudoRandom(2 * 3 * 32 * 48, 5);
      const input =
        c.dtype === "float16"
          ? new ort.Tensor("float16", toHalf(pixels), [2, 3, 32, 48])
          : new ort.Tensor("float32", pixels, [2, 3, 32, 48]);
      const out = (await s.run({ sample: input }))[c.output]!;
      expect(out.dims).toEqual([2, c.channels, 4, 6]);
      const values = c.dtype === "float16" ? fromHalf(out.data as Uint16Array) : (out.data as Float32Array);
      expect(allFinite(values)).toBe(true);
    });
  }
});

describe("hunyuan-video decoder", () => {
  it("maps f latent frames to (f - 1) * 4 + 1 frames and ×8 spatially, causally", async () => {
    const s = await decoderOf("hunyuan-video-tiny");
    expect(s.inputMetadata[0]).toMatchObject({
      name: "latent_sample",
      shape: ["batch_size", "num_channels_latent", "num_frames_latent", "height_latent", "width_latent"],
    });
    expect(s.outputMetadata[0]).toMatchObject({
      name: "sample",
      shape: ["batch_size", 3, "num_frames", "height", "width"],
    });

    const frame0 = pseudoRandom(16 * 24, 6);
    const one = (await s.run({ latent_sample: new ort.Tensor("float32", frame0, [1, 16, 1, 4, 6]) })).sample!;
    expect(one.dims).toEqual([1, 3, 1, 32, 48]);

    // Channel-major layout: latent frame 0 of each channel is the first 24 values of its plane.
    const three = new Float32Array(16 * 3 * 24);
    const rest = pseudoRandom(three.length, 7);
    for (let c = 0; c < 16; c++) {
      three.set(frame0.subarray(c * 24, (c + 1) * 24), c * 72);
      three.set(rest.subarray(c * 72 + 24, (c + 1) * 72), c * 72 + 24);
    }
    const nine = (await s.run({ latent_sample: new ort.Tensor("float32", three, [1, 16, 3, 4, 6]) })).sample!;
    expect(nine.dims).toEqual([1, 3, 9, 32, 48]);
    const a = one.data as Float32Array;
    const b = nine.data as Float32Array;
    expect(allFinite(b)).toBe(true);
    // Output frame 0 depends only on latent frame 0, as in a causal video VAE. Not bit-exact: the
    // conv kernels ORT picks differ with the input's frame count.
    const plane = 32 * 48;
    let maxDiff = 0;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < plane; i++)
        maxDiff = Math.max(maxDiff, Math.abs(b[c * 9 * plane + i]! - a[c * plane + i]!));
    }
    expect(maxDiff).toBeLessThan(1e-5);
  });
});

describe("generateVaeModel", () => {
  it("is deterministic: the same seed gives identical bytes, another seed different ones", async () => {
    const dir = (name: string) => join(root, "seeds", name);
    await generateVaeModel({ family: "flux", outDir: dir("a"), seed: 7 });
    await generateVaeModel({ family: "flux", outDir: dir("b"), seed: 7 });
    await generateVaeModel({ family: "flux", outDir: dir("c"), seed: 8 });
    for (const part of ["vae_decoder", "vae_encoder"]) {
      const [a, b, c] = await Promise.all(
        ["a", "b", "c"].map((n) => readFile(join(dir(n), part, "model.onnx"))),
      );
      expect(a!.equals(b!)).toBe(true);
      expect(a!.equals(c!)).toBe(false);
      expect(a!.length).toBe(c!.length);
    }
  });

  it("taesd arch: the real TAESD layout (64 channels), decoding and encoding at /8", async () => {
    const outDir = join(root, "taesd");
    await generateVaeModel({ family: "sd-v1", outDir, arch: "taesd", encoderOutput: "latent_sample" });
    const dec = await open(join(outDir, "vae_decoder", "model.onnx"));
    const out = (
      await dec.run({ latent_sample: new ort.Tensor("float32", pseudoRandom(4 * 12, 8, 3), [1, 4, 3, 4]) })
    ).sample!;
    expect(out.dims).toEqual([1, 3, 24, 32]);
    expect(allFinite(out.data as Float32Array)).toBe(true);
    const enc = await open(join(outDir, "vae_encoder", "model.onnx"));
    const lat = (
      await enc.run({ sample: new ort.Tensor("float32", pseudoRandom(3 * 24 * 32, 9), [1, 3, 24, 32]) })
    ).latent_sample!;
    expect(lat.dims).toEqual([1, 4, 3, 4]);
    const config = await readJson(join(outDir, "vae_decoder", "config.json"));
    expect(config.block_out_channels).toEqual([64, 64, 64, 64]);
  });

  it("refuses an encoder or the taesd arch for video", async () => {
    await expect(
      generateVaeModel({ family: "hunyuan-video", outDir: join(root, "x"), withEncoder: true }),
    ).rejects.toThrow(/encoder/);
    await expect(
      generateVaeModel({ family: "hunyuan-video", outDir: join(root, "y"), arch: "taesd" }),
    ).rejects.toThrow(/taesd/);
  });
});
