import { packFluxLatents } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import type { LatentGeometry } from "../model-dir.ts";
import { gaussian } from "../random.ts";
import { latentPreview, latentShape, packPatches, unpackPatches } from "./latents.ts";

const geometry = (g: Partial<LatentGeometry>): LatentGeometry => ({
  latentChannels: 4,
  spatialFactor: 8,
  temporalFactor: null,
  patchSize: 1,
  scalingFactor: 0.18215,
  shiftFactor: null,
  ...g,
});

describe("latents", () => {
  it("takes their shape from the model's geometry", () => {
    expect(latentShape(geometry({}), 64, 96)).toEqual([1, 4, 12, 8]);
    expect(latentShape(geometry({ latentChannels: 16, spatialFactor: 16 }), 64, 96)).toEqual([1, 16, 6, 4]);
  });

  it("packs 2x2 patches as Flux does, and unpacks them back", () => {
    const shape = [2, 16, 6, 4];
    const x = gaussian(2 * 16 * 6 * 4, 3);
    const packed = packPatches(x, shape, 2);
    const flux = packFluxLatents(x, shape);
    expect(packed.shape).toEqual(flux.shape);
    expect(packed.data).toEqual(flux.data);
    expect(unpackPatches(packed.data, shape, 2)).toEqual(x);
    expect(packPatches(x, shape, 1).data).toBe(x);
  });

  it("previews any channel count at latent resolution", () => {
    const four = latentPreview(gaussian(4 * 12, 1), 4, 3, 4);
    const sixteen = latentPreview(gaussian(16 * 12, 1), 16, 3, 4);
    expect(four).toHaveLength(3 * 4 * 3);
    expect(sixteen).toHaveLength(3 * 4 * 3);
    // Zero latents are mid-grey whatever the projection.
    expect([...latentPreview(new Float32Array(16 * 12), 16, 3, 4)].every((v) => v === 128)).toBe(true);
    // Not a constant image: the latents show through.
    expect(new Set(sixteen).size).toBeGreaterThan(3);
  });
});
