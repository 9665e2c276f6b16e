import { DecodeQuery, float32ToFloat16 } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { prepareDecode, readDecode } from "./decode.ts";

const zeros = (n: number) => new Float32Array(n);

/** The query as the server's schema reads it (repeated keys become lists, as Express does). */
function serverView(path: string) {
  const params = new URL(path, "http://x").searchParams;
  const raw: Record<string, string | string[]> = {};
  for (const key of new Set(params.keys())) {
    const all = params.getAll(key);
    raw[key] = all.length > 1 ? all : all[0]!;
  }
  return DecodeQuery.parse(raw);
}

describe("prepareDecode", () => {
  it("sends what current diffusers' remote_decode sends by default (do_scaling=True)", () => {
    const bits = float32ToFloat16(zeros(4 * 8 * 8));
    const req = prepareDecode("sd-v1-tiny", { tensor: { data: bits, shape: [1, 4, 8, 8] } });
    expect(req.method).toBe("POST");
    expect(req.path).toBe(
      "/v1/vae/sd-v1-tiny/decode?image_format=jpg&output_type=pil&partial_postprocess=False" +
        "&shape=1&shape=4&shape=8&shape=8&dtype=float16&do_scaling=True",
    );
    expect(req.headers).toEqual({ Accept: "*/*" });
    expect(req.body).toEqual(new Uint8Array(bits.buffer));
    expect(serverView(req.path)).toMatchObject({ shape: [1, 4, 8, 8], dtype: "float16", do_scaling: true });
  });

  it("sends scaling_factor instead of do_scaling when one is given", () => {
    const req = prepareDecode("m", {
      tensor: { data: zeros(4 * 4), shape: [1, 4, 2, 2] },
      scalingFactor: 0.18215,
      imageFormat: "png",
    });
    expect(req.path).toBe(
      "/v1/vae/m/decode?image_format=png&output_type=pil&partial_postprocess=False" +
        "&shape=1&shape=4&shape=2&shape=2&dtype=float32&scaling_factor=0.18215",
    );
    expect(req.body).toHaveLength(64);
  });

  it("sends packed Flux latents with shift, height and width, as a bfloat16 pt request", () => {
    const req = prepareDecode("flux-tiny", {
      tensor: { data: zeros(4 * 64), shape: [1, 4, 64], dtype: "bfloat16" },
      outputType: "pt",
      partialPostprocess: true,
      scalingFactor: 0.3611,
      shiftFactor: 0.1159,
      height: 32,
      width: 32,
    });
    expect(req.path).toBe(
      "/v1/vae/flux-tiny/decode?image_format=jpg&output_type=pt&partial_postprocess=True" +
        "&shape=1&shape=4&shape=64&dtype=bfloat16&scaling_factor=0.3611&shift_factor=0.1159&height=32&width=32",
    );
    expect(req.body).toHaveLength(4 * 64 * 2);
    expect(serverView(req.path)).toMatchObject({ height: 32, width: 32, partial_postprocess: true });
  });

  it("sends no scaling at all with doScaling false, and no size without both sides", () => {
    const req = prepareDecode("a/b c", {
      tensor: { data: zeros(4), shape: [1, 4, 1, 1] },
      doScaling: false,
      scalingFactor: 2,
      shiftFactor: 1,
      height: 8,
    });
    expect(req.path).toBe(
      "/v1/vae/a%2Fb%20c/decode?image_format=jpg&output_type=pil&partial_postprocess=False" +
        "&shape=1&shape=4&shape=1&shape=1&dtype=float32",
    );
  });
});

describe("readDecode", () => {
  const answer = (body: Uint8Array, headers: Record<string, string>) =>
    readDecode(new Response(body, { headers }));

  it("tells images, tensors and videos apart by their headers", async () => {
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0]);
    expect(await answer(jpeg, { "content-type": "image/jpeg" })).toEqual({
      kind: "image",
      bytes: jpeg,
      contentType: "image/jpeg",
    });
    const mp4 = new Uint8Array([0, 0, 0, 24, 0x66, 0x74, 0x79, 0x70]);
    expect(await answer(mp4, { "content-type": "video/mp4" })).toMatchObject({ kind: "video", bytes: mp4 });
    const pixels = await answer(new Uint8Array([1, 2, 3, 4, 5, 6]), {
      "content-type": "tensor/binary",
      shape: "[1, 1, 2, 3]",
      dtype: "uint8",
    });
    expect(pixels).toMatchObject({ kind: "tensor", dtype: "uint8", shape: [1, 1, 2, 3] });
    const half = await answer(new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer), {
      "content-type": "tensor/binary",
      shape: "[2]",
      dtype: "float16",
    });
    expect(half.kind === "tensor" && Array.from(half.data)).toEqual([1, -2]);
  });
});
