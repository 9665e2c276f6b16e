import { encodeFromFloat32 } from "@hybrid/protocol";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pythonQuery, readTensor, remoteDecode, remoteEncode } from "./diffusers-client.ts";
import { isPng, pngOf, randn } from "./fixtures.ts";
import { type Stack, startStack } from "./stack.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const url = (model: string, op: "encode" | "decode") => `${stack.baseUrl}/v1/vae/${model}/${op}`;

describe.each([
  { model: "sd-v1-tiny", channels: 4 },
  { model: "sdxl-tiny", channels: 4 },
  { model: "flux-tiny", channels: 16 },
])("encode $model", ({ model, channels }) => {
  it("encodes a PNG as remote_encode sends it to [1, C, H/8, W/8]", async () => {
    const { res, bytes } = await remoteEncode(url(model, "encode"), await pngOf(64, 48));
    expect(res.status).toBe(200);
    const t = readTensor(bytes, res.headers);
    expect(t.shape).toEqual([1, channels, 6, 8]);
    expect(t.dtype).toBe("float32");
  });

  it("encodes a raw tensor [1, 3, H, W] in [-1, 1]", async () => {
    const shape = [1, 3, 32, 40];
    const values = randn(3 * 32 * 40, 5).map((v) => Math.tanh(v));
    const res = await fetch(`${url(model, "encode")}?${pythonQuery({ shape, dtype: "float16" })}`, {
      method: "POST",
      headers: { "Content-Type": "tensor/binary" },
      body: encodeFromFloat32(values, "float16"),
    });
    expect(res.status).toBe(200);
    const t = readTensor(new Uint8Array(await res.arrayBuffer()), res.headers);
    expect([t.shape, t.dtype]).toEqual([[1, channels, 4, 5], "float16"]);
  });

  it("applies (latents - shift) * scale when factors are given", async () => {
    const png = await pngOf(32, 32);
    const plain = await remoteEncode(url(model, "encode"), png);
    const scaled = await remoteEncode(url(model, "encode"), png, { scaling_factor: 2, shift_factor: 0.25 });
    const a = readTensor(plain.bytes, plain.res.headers).values;
    const b = readTensor(scaled.bytes, scaled.res.headers).values;
    for (let i = 0; i < a.length; i += 7) expect(b[i]).toBeCloseTo((a[i]! - 0.25) * 2, 4);
  });

  it("encode → decode returns the original size", async () => {
    const enc = await remoteEncode(url(model, "encode"), await pngOf(56, 40));
    const latent = readTensor(enc.bytes, enc.res.headers);
    const dec = await remoteDecode(url(model, "decode"), {
      tensor: { data: enc.bytes, shape: latent.shape, dtype: "float32" },
      image_format: "png",
    });
    expect(dec.res.status).toBe(200);
    expect(isPng(dec.bytes)).toBe(true);
    const meta = await sharp(dec.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([56, 40]);
  });
});

describe("encode edge cases", () => {
  it("sizes an image down to multiples of 8, like diffusers' VaeImageProcessor", async () => {
    const { res, bytes } = await remoteEncode(url("sd-v1-tiny", "encode"), await pngOf(61, 35));
    expect(res.status).toBe(200);
    expect(readTensor(bytes, res.headers).shape).toEqual([1, 4, 4, 7]);
  });

  it("accepts JPEG and WebP bodies", async () => {
    const raw = await sharp(await pngOf(32, 24))
      .raw()
      .toBuffer();
    for (const fmt of ["jpeg", "webp"] as const) {
      const body = await sharp(raw, { raw: { width: 32, height: 24, channels: 3 } })
        [fmt]()
        .toBuffer();
      const { res, bytes } = await remoteEncode(url("sd-v1-tiny", "encode"), new Uint8Array(body));
      expect(res.status, fmt).toBe(200);
      expect(readTensor(bytes, res.headers).shape).toEqual([1, 4, 3, 4]);
    }
  });

  it("samples from the latent distribution only when sample=True, reproducibly with a seed", async () => {
    const png = await pngOf(32, 32);
    const post = (q: string) =>
      fetch(`${url("sd-v1-tiny", "encode")}?${q}`, { method: "POST", body: png }).then(async (r) =>
        Buffer.from(await r.arrayBuffer()),
      );
    const mean1 = await post("");
    const mean2 = await post("");
    const s1 = await post("sample=True&seed=7");
    const s2 = await post("sample=True&seed=7");
    const s3 = await post("sample=True&seed=8");
    expect(mean1.equals(mean2)).toBe(true);
    expect(s1.equals(s2)).toBe(true);
    expect(s1.equals(mean1)).toBe(false);
    expect(s1.equals(s3)).toBe(false);
  });

  it("a decode-only model answers 400 unsupported_operation", async () => {
    const res = await fetch(url("hunyuan-video-tiny", "encode"), {
      method: "POST",
      body: await pngOf(16, 16),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "unsupported_operation" });
  });
});
