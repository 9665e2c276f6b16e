import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ffmpeg from "@ffmpeg-installer/ffmpeg";
import { packFluxLatents } from "@hybrid/protocol";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RemoteDecodeArgs, readTensor, remoteDecode } from "./diffusers-client.ts";
import { isJpeg, isMp4, isPng, latents, range } from "./fixtures.ts";
import { type Stack, startStack } from "./stack.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const endpoint = (model: string) => `${stack.baseUrl}/v1/vae/${model}/decode`;

const IMAGE_FAMILIES = [
  { model: "sd-v1-tiny", channels: 4, scaling: 0.18215, shift: undefined },
  { model: "sdxl-tiny", channels: 4, scaling: 0.13025, shift: undefined },
  { model: "flux-tiny", channels: 16, scaling: 0.3611, shift: 0.1159 },
] as const;

async function ok(model: string, args: RemoteDecodeArgs) {
  const { res, bytes } = await remoteDecode(endpoint(model), args);
  if (res.status !== 200) throw new Error(`${res.status}: ${Buffer.from(bytes).toString()}`);
  return { res, bytes };
}

describe.each(IMAGE_FAMILIES)("decode $model", ({ model, channels, scaling, shift }) => {
  // Non-square on purpose: 6 x 5 latents → 48 x 40 pixels (height x width).
  const shape = [1, channels, 6, 5];
  const H = 48;
  const W = 40;
  const scaled = { scaling_factor: scaling, ...(shift !== undefined ? { shift_factor: shift } : {}) };

  it("pil + jpg answers a JPEG of 8h x 8w", async () => {
    const { res, bytes } = await ok(model, { tensor: latents(shape).tensor, ...scaled });
    expect(res.headers.get("content-type")).toBe("image/jpeg");
    expect(isJpeg(bytes)).toBe(true);
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([W, H, "jpeg"]);
  });

  it("pil + png answers a PNG, the first image of a batch of 2", async () => {
    const { res, bytes } = await ok(model, {
      tensor: latents([2, ...shape.slice(1)]).tensor,
      image_format: "png",
      ...scaled,
    });
    expect(res.headers.get("content-type")).toBe("image/png");
    expect(isPng(bytes)).toBe(true);
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([W, H, 3]);
  });

  it("pil with a processor answers float16 [B, 3, H, W] in [0, 1]", async () => {
    const { bytes, res } = await ok(model, {
      tensor: latents([2, ...shape.slice(1)]).tensor,
      processor: true,
      ...scaled,
    });
    const t = readTensor(bytes, res.headers);
    expect(t.dtype).toBe("float16");
    expect(t.shape).toEqual([2, 3, H, W]);
    const r = range(t.values);
    expect(r.finite && r.min >= 0 && r.max <= 1).toBe(true);
    expect(r.max - r.min).toBeGreaterThan(0.05);
  });

  it("pt + partial_postprocess answers uint8 channels-last [B, H, W, 3], batch 2", async () => {
    const { bytes, res } = await ok(model, {
      tensor: latents([2, ...shape.slice(1)], "float16").tensor,
      output_type: "pt",
      partial_postprocess: true,
      ...scaled,
    });
    const t = readTensor(bytes, res.headers);
    expect([t.dtype, t.shape]).toEqual(["uint8", [2, H, W, 3]]);
    const r = range(t.values);
    expect(r.max).toBeGreaterThan(r.min);
    // The breakdown of where the time went, every phase once, with a duration.
    const timing = new Map(
      (res.headers.get("server-timing") ?? "").split(", ").map((p) => {
        const [name, dur] = p.split(";dur=");
        return [name, Number(dur)] as const;
      }),
    );
    expect([...timing.keys()]).toEqual([
      "receive",
      "admit",
      "queue",
      "deliver",
      "read",
      "model",
      "post",
      "write",
      "fetch",
    ]);
    for (const ms of timing.values()) expect(ms).toBeGreaterThanOrEqual(0);
    expect(timing.get("model")).toBeGreaterThan(0);
  });

  it("pt without postprocessing answers float16 NCHW, not denormalised", async () => {
    const { bytes, res } = await ok(model, { tensor: latents(shape).tensor, output_type: "pt", ...scaled });
    const t = readTensor(bytes, res.headers);
    expect([t.dtype, t.shape]).toEqual(["float16", [1, 3, H, W]]);
    const r = range(t.values);
    expect(r.finite).toBe(true);
    expect(r.min).toBeLessThan(0); // [-1, 1]-ish, not [0, 1]
  });

  it("bfloat16 input answers bfloat16", async () => {
    const { bytes, res } = await ok(model, {
      tensor: latents(shape, "bfloat16").tensor,
      output_type: "pt",
      ...scaled,
    });
    const t = readTensor(bytes, res.headers);
    expect([t.dtype, t.shape]).toEqual(["bfloat16", [1, 3, H, W]]);
    expect(range(t.values).finite).toBe(true);
  });

  it("do_scaling=True uses the model's own factors: same answer as passing them", async () => {
    const input = latents(shape).tensor;
    const viaDoScaling = await ok(model, { tensor: input, do_scaling: true, output_type: "pt" });
    const viaFactors = await ok(model, { tensor: input, output_type: "pt", ...scaled });
    const unscaled = await ok(model, { tensor: input, output_type: "pt", do_scaling: false });
    expect(Buffer.from(viaDoScaling.bytes).equals(Buffer.from(viaFactors.bytes))).toBe(true);
    expect(Buffer.from(unscaled.bytes).equals(Buffer.from(viaFactors.bytes))).toBe(false);
  });

  it("invariant: decode(x, scaling_factor=s) == decode(x / s) unscaled", async () => {
    const { values } = latents(shape, "float32", 7);
    // The server computes float32(x / s) in double precision, as this does.
    const s = scaling;
    const pre = values.map((v) => v / s);
    const a = await ok(model, {
      tensor: { data: new Uint8Array(values.buffer), shape, dtype: "float32" },
      scaling_factor: s,
      output_type: "pt",
    });
    const b = await ok(model, {
      tensor: { data: new Uint8Array(pre.buffer), shape, dtype: "float32" },
      output_type: "pt",
      do_scaling: false,
    });
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
  });

  it("invariants: PNG == uint8 tensor; uint8 == denormalised float within 1", async () => {
    const input = latents(shape, "float32", 3).tensor;
    const png = await ok(model, { tensor: input, image_format: "png", ...scaled });
    const u8 = await ok(model, { tensor: input, output_type: "pt", partial_postprocess: true, ...scaled });
    const raw = await ok(model, { tensor: input, output_type: "pt", ...scaled });
    const pixels = await sharp(png.bytes).raw().toBuffer();
    const t8 = readTensor(u8.bytes, u8.res.headers);
    expect(Buffer.from(t8.values as Uint8Array).equals(pixels)).toBe(true);
    const tf = readTensor(raw.bytes, raw.res.headers);
    let worst = 0;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < 3; c++) {
          const f = tf.values[(c * H + y) * W + x]!;
          const expected = Math.min(1, Math.max(0, f / 2 + 0.5)) * 255;
          worst = Math.max(worst, Math.abs(expected - t8.values[(y * W + x) * 3 + c]!));
        }
    expect(worst).toBeLessThanOrEqual(1);
  });
});

describe("decode flux packed latents", () => {
  it("unpacks [B, (H/16)(W/16), C*4] with height/width like FluxPipeline", async () => {
    const unpackedShape = [1, 16, 6, 4];
    const { values } = latents(unpackedShape, "float32", 11);
    const packed = packFluxLatents(values, unpackedShape);
    expect(packed.shape).toEqual([1, 6, 64]);
    const asPacked = await ok("flux-tiny", {
      tensor: { data: new Uint8Array(packed.data.buffer), shape: packed.shape, dtype: "float32" },
      height: 48,
      width: 32,
      output_type: "pt",
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
    });
    const as4d = await ok("flux-tiny", {
      tensor: { data: new Uint8Array(values.buffer), shape: unpackedShape, dtype: "float32" },
      output_type: "pt",
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
    });
    expect(readTensor(asPacked.bytes, asPacked.res.headers).shape).toEqual([1, 3, 48, 32]);
    expect(Buffer.from(asPacked.bytes).equals(Buffer.from(as4d.bytes))).toBe(true);
  });
});

describe("decode hunyuan-video", () => {
  const model = "hunyuan-video-tiny";
  // f = 3 latent frames → F = (3 - 1) * 4 + 1 = 9 frames of 32 x 40
  const shape = [1, 16, 3, 4, 5];
  const [F, H, W] = [9, 32, 40];

  it("pil with a processor answers float16 frames [F, 3, H, W] in [0, 1]", async () => {
    const { bytes, res } = await ok(model, {
      tensor: latents(shape).tensor,
      processor: true,
      do_scaling: true,
    });
    const t = readTensor(bytes, res.headers);
    expect([t.dtype, t.shape]).toEqual(["float16", [F, 3, H, W]]);
    const r = range(t.values);
    expect(r.min >= 0 && r.max <= 1).toBe(true);
  });

  it("pt + partial_postprocess answers uint8 [F, H, W, 3]", async () => {
    const { bytes, res } = await ok(model, {
      tensor: latents(shape, "float16").tensor,
      output_type: "pt",
      partial_postprocess: true,
    });
    const t = readTensor(bytes, res.headers);
    expect([t.dtype, t.shape]).toEqual(["uint8", [F, H, W, 3]]);
  });

  it("pt without postprocessing answers float16 [B, 3, F, H, W]", async () => {
    const { bytes, res } = await ok(model, { tensor: latents(shape, "bfloat16").tensor, output_type: "pt" });
    const t = readTensor(bytes, res.headers);
    expect([t.dtype, t.shape]).toEqual(["bfloat16", [1, 3, F, H, W]]);
  });

  it("mp4 answers a playable H.264 file with every frame", async () => {
    const { bytes, res } = await ok(model, {
      tensor: latents(shape).tensor,
      output_type: "mp4",
      scaling_factor: 0.476986,
    });
    expect(res.headers.get("content-type")).toBe("video/mp4");
    expect(isMp4(bytes)).toBe(true);
    const file = join(tmpdir(), `e2e-${process.pid}.mp4`);
    writeFileSync(file, bytes);
    const probe = spawnSync(
      ffmpeg.path,
      ["-hide_banner", "-i", file, "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    expect(probe.status).toBe(0);
    expect(probe.stderr.toString()).toMatch(/Video: h264.*yuv420p/);
    expect(probe.stdout.length).toBe(F * H * W * 3);
  });

  it("an image request answers the first frame as a PNG", async () => {
    const { res, bytes } = await ok(model, { tensor: latents(shape).tensor, image_format: "png" });
    expect(res.headers.get("content-type")).toBe("image/png");
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height]).toEqual([W, H]);
    const firstFrame = await ok(model, {
      tensor: latents(shape).tensor,
      output_type: "pt",
      partial_postprocess: true,
    });
    const frame0 = (readTensor(firstFrame.bytes, firstFrame.res.headers).values as Uint8Array).subarray(
      0,
      H * W * 3,
    );
    expect((await sharp(bytes).raw().toBuffer()).equals(Buffer.from(frame0))).toBe(true);
  });

  it("one latent frame decodes to one frame", async () => {
    const { bytes, res } = await ok(model, {
      tensor: latents([1, 16, 1, 4, 5]).tensor,
      output_type: "pt",
      partial_postprocess: true,
    });
    expect(readTensor(bytes, res.headers).shape).toEqual([1, H, W, 3]);
  });
});

describe("GET /v1/models", () => {
  it("lists every family with its latent layout and factors", async () => {
    const body = (await (await fetch(`${stack.baseUrl}/v1/models`)).json()) as {
      data: Array<Record<string, unknown>>;
    };
    const byId = Object.fromEntries(body.data.map((m) => [m.id, m]));
    expect(byId["sd-v1-tiny"]).toMatchObject({
      family: "sd-v1",
      task: "vae",
      latent_channels: 4,
      scaling_factor: 0.18215,
    });
    expect(byId["sdxl-tiny"]).toMatchObject({
      family: "sdxl",
      latent_channels: 4,
      scaling_factor: 0.13025,
      dtype: "float16",
    });
    expect(byId["flux-tiny"]).toMatchObject({
      family: "flux",
      latent_channels: 16,
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
    });
    expect(byId["hunyuan-video-tiny"]).toMatchObject({
      family: "hunyuan-video",
      latent_channels: 16,
      latent_rank: 5,
      operations: ["decode"],
    });
  });
});

describe("decode as diffusers main sends it today (no Content-Type, Accept */*)", () => {
  const noHeaders = async (model: string, args: RemoteDecodeArgs) => {
    const { res, bytes } = await remoteDecode(endpoint(model), args, "no-headers");
    if (res.status !== 200) throw new Error(`${res.status}: ${Buffer.from(bytes).toString()}`);
    return { res, bytes };
  };

  it.each(IMAGE_FAMILIES)(
    "$model: pil answers an image in image_format; pt answers tensors",
    async ({ model, channels }) => {
      const shape = [1, channels, 4, 6];
      const jpg = await noHeaders(model, { tensor: latents(shape).tensor });
      expect(jpg.res.headers.get("content-type")).toBe("image/jpeg");
      expect(isJpeg(jpg.bytes)).toBe(true);
      const png = await noHeaders(model, { tensor: latents(shape).tensor, image_format: "png" });
      expect(isPng(png.bytes)).toBe(true);
      const u8 = await noHeaders(model, {
        tensor: latents(shape).tensor,
        output_type: "pt",
        partial_postprocess: true,
      });
      expect(readTensor(u8.bytes, u8.res.headers).shape).toEqual([1, 32, 48, 3]);
    },
  );

  it("hunyuan-video: pil answers the float16 frames a VideoProcessor finishes; mp4 answers a video", async () => {
    const shape = [1, 16, 2, 4, 4];
    const pil = await noHeaders("hunyuan-video-tiny", { tensor: latents(shape).tensor, processor: true });
    const t = readTensor(pil.bytes, pil.res.headers);
    expect([t.dtype, t.shape]).toEqual(["float16", [5, 3, 32, 32]]);
    const mp4 = await noHeaders("hunyuan-video-tiny", { tensor: latents(shape).tensor, output_type: "mp4" });
    expect(isMp4(mp4.bytes)).toBe(true);
  });

  it("do_scaling=True with only shift_factor keeps the model's scale and the given shift", async () => {
    const input = latents([1, 16, 4, 4]).tensor;
    const a = await noHeaders("flux-tiny", { tensor: input, output_type: "pt", shift_factor: 0.1159 });
    const b = await noHeaders("flux-tiny", {
      tensor: input,
      output_type: "pt",
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
    });
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
  });
});

describe("many requests at once", () => {
  it("answers every one of 24 concurrent decodes across models, none lost or mixed up", async () => {
    const families = [...IMAGE_FAMILIES];
    const calls = Array.from({ length: 24 }, async (_, i) => {
      const f = families[i % families.length]!;
      const side = 2 + (i % 5); // distinct sizes tell answers apart
      const { res, bytes } = await remoteDecode(endpoint(f.model), {
        tensor: latents([1, f.channels, side, side + 1], "float32", i).tensor,
        output_type: "pt",
        partial_postprocess: true,
      });
      return {
        status: res.status,
        shape: res.status === 200 ? readTensor(bytes, res.headers).shape : null,
        side,
      };
    });
    for (const r of await Promise.all(calls)) {
      expect(r.status).toBe(200);
      expect(r.shape).toEqual([1, r.side * 8, (r.side + 1) * 8, 3]);
    }
  });
});
