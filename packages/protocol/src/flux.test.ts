import { describe, expect, it } from "vitest";
import { AppError } from "./errors.ts";
import { fluxLatentSize, packFluxLatents, unpackedFluxShape, unpackFluxLatents } from "./flux.ts";

describe("flux packing", () => {
  it("computes the latent grid like diffusers", () => {
    expect(fluxLatentSize(1024, 1024)).toEqual({ h: 128, w: 128 });
    expect(fluxLatentSize(1000, 520)).toEqual({ h: 124, w: 64 });
  });

  it("unpacks element by element as view/permute/reshape does", () => {
    const [b, c, h, w] = [2, 3, 4, 6];
    const packedShape = [b, (h / 2) * (w / 2), c * 4];
    const packed = Float32Array.from({ length: b * c * h * w }, (_, i) => i);
    const { data, shape } = unpackFluxLatents(packed, packedShape, h * 8, w * 8);
    expect(shape).toEqual([b, c, h, w]);
    // out[n, ch, 2i+di, 2j+dj] = in[n, i*(w/2)+j, ch*4 + di*2 + dj]
    for (let n = 0; n < b; n++)
      for (let ch = 0; ch < c; ch++)
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) {
            const i = y >> 1;
            const di = y & 1;
            const j = x >> 1;
            const dj = x & 1;
            const src =
              n * packedShape[1]! * packedShape[2]! + (i * (w / 2) + j) * c * 4 + ch * 4 + di * 2 + dj;
            expect(data[((n * c + ch) * h + y) * w + x]).toBe(src);
          }
  });

  it("pack is the inverse of unpack", () => {
    const shape = [1, 16, 8, 10];
    const latents = Float32Array.from({ length: 16 * 80 }, (_, i) => Math.sin(i));
    const packed = packFluxLatents(latents, shape);
    expect(packed.shape).toEqual([1, 20, 64]);
    const back = unpackFluxLatents(packed.data, packed.shape, 64, 80);
    expect(back.shape).toEqual(shape);
    expect(Array.from(back.data)).toEqual(Array.from(latents));
  });

  it("rejects sequences that do not match height and width", () => {
    expect(() => unpackedFluxShape([1, 4096, 64], 512, 512)).toThrow(AppError);
    expect(() => unpackedFluxShape([1, 1024, 63], 512, 512)).toThrow(AppError);
    expect(() => unpackedFluxShape([1, 1, 64], 8, 8)).toThrow(AppError);
    expect(unpackedFluxShape([1, 1024, 64], 512, 512)).toEqual([1, 16, 64, 64]);
  });
});
