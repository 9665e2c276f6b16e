import { describe, expect, it } from "vitest";
import { prepareEncode, readEncode } from "./encode.ts";

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]);

describe("prepareEncode", () => {
  it("sends an image file as the body, with diffusers' scaling keys", () => {
    const req = prepareEncode("sd-v1-tiny", PNG, { scalingFactor: 0.18215 });
    expect(req.path).toBe("/v1/vae/sd-v1-tiny/encode?scaling_factor=0.18215");
    expect(req.body).toBe(PNG);
    expect(prepareEncode("m", PNG).path).toBe("/v1/vae/m/encode");
  });

  it("sends a tensor with shape and dtype, and sampling options", () => {
    const req = prepareEncode(
      "m",
      { data: new Float32Array(3 * 8 * 8), shape: [1, 3, 8, 8], dtype: "float16" },
      { sample: true, seed: 7, shiftFactor: 0.1 },
    );
    expect(req.path).toBe(
      "/v1/vae/m/encode?shift_factor=0.1&shape=1&shape=3&shape=8&shape=8&dtype=float16&sample=True&seed=7",
    );
    expect(req.body).toHaveLength(3 * 8 * 8 * 2);
  });
});

describe("readEncode", () => {
  it("reads float latents and refuses anything else", async () => {
    const latents = new Float32Array([0.5, -1, 2, 3]);
    const out = await readEncode(
      new Response(new Uint8Array(latents.buffer), {
        headers: { "content-type": "tensor/binary", shape: "[1, 4, 1, 1]", dtype: "float32" },
      }),
    );
    expect(out).toEqual({ data: latents, shape: [1, 4, 1, 1], dtype: "float32" });
    await expect(
      readEncode(new Response(new Uint8Array(1), { headers: { "content-type": "image/png" } })),
    ).rejects.toThrow(TypeError);
  });
});
