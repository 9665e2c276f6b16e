import { describe, expect, it } from "vitest";
import {
  concatPooled,
  fluxImageIds,
  fluxTextIds,
  joinSd3Text,
  type Sequence,
  t5SequenceLength,
  transformerTimestep,
} from "./flow-conditioning.ts";

/** A sequence whose value at (b, s, d) encodes its own position: tag·1000 + b·100 + s·10 + d. */
function tagged(tag: number, batch: number, sequence: number, dim: number): Sequence {
  const data = new Float32Array(batch * sequence * dim);
  for (let b = 0; b < batch; b++)
    for (let s = 0; s < sequence; s++)
      for (let d = 0; d < dim; d++) data[(b * sequence + s) * dim + d] = tag * 1000 + b * 100 + s * 10 + d;
  return { data, batch, sequence, dim };
}

const at = (x: Sequence, b: number, s: number, d: number) => x.data[(b * x.sequence + s) * x.dim + d];

describe("joinSd3Text", () => {
  it("puts CLIP-L then CLIP-G features in the first rows, zero-padded to the T5 width, then T5's rows", () => {
    const l = tagged(1, 2, 3, 2);
    const g = tagged(2, 2, 3, 3);
    const t5 = tagged(3, 2, 4, 8);
    const x = joinSd3Text(l, g, t5);
    expect([x.batch, x.sequence, x.dim]).toEqual([2, 7, 8]);
    for (let b = 0; b < 2; b++) {
      for (let s = 0; s < 3; s++) {
        expect(at(x, b, s, 0)).toBe(at(l, b, s, 0));
        expect(at(x, b, s, 1)).toBe(at(l, b, s, 1));
        for (let d = 0; d < 3; d++) expect(at(x, b, s, 2 + d)).toBe(at(g, b, s, d));
        for (let d = 5; d < 8; d++) expect(at(x, b, s, d)).toBe(0);
      }
      for (let s = 0; s < 4; s++)
        for (let d = 0; d < 8; d++) expect(at(x, b, 3 + s, d)).toBe(at(t5, b, s, d));
    }
  });

  it("appends zeros of the joint width when the model has no T5 encoder", () => {
    const x = joinSd3Text(tagged(1, 1, 2, 2), tagged(2, 1, 2, 2), { zeros: { sequence: 2, dim: 6 } });
    expect([x.batch, x.sequence, x.dim]).toEqual([1, 4, 6]);
    expect(Array.from(x.data.subarray(2 * 6))).toEqual(new Array(12).fill(0));
    expect(at(x, 0, 1, 3)).toBe(2000 + 10 + 1);
  });

  it("refuses CLIP features wider than the T5 width", () => {
    expect(() => joinSd3Text(tagged(1, 1, 2, 4), tagged(2, 1, 2, 4), tagged(3, 1, 2, 6))).toThrow(/wider/);
  });
});

describe("concatPooled", () => {
  it("joins per batch row: the first vector's features, then the second's", () => {
    const a = { data: Float32Array.of(1, 2, 3, 4), batch: 2, dim: 2 };
    const b = { data: Float32Array.of(10, 20, 30, 40, 50, 60), batch: 2, dim: 3 };
    const p = concatPooled(a, b);
    expect(p.dim).toBe(5);
    expect(Array.from(p.data)).toEqual([1, 2, 10, 20, 30, 3, 4, 40, 50, 60]);
  });
});

describe("Flux ids", () => {
  it("image ids are (0, row, column) per 2×2 patch, rows outermost", () => {
    const ids = fluxImageIds(2, 3);
    expect(Array.from(ids)).toEqual([0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2]);
  });
  it("text ids are zeros, three per token", () => {
    expect(fluxTextIds(4)).toEqual(new Float32Array(12));
  });
});

describe("t5SequenceLength and transformerTimestep", () => {
  it("defaults as the model cards run them and keeps a requested length", () => {
    expect(t5SequenceLength("flux", true)).toBe(512);
    expect(t5SequenceLength("flux", false)).toBe(256);
    expect(t5SequenceLength("sd3", false)).toBe(256);
    expect(t5SequenceLength("flux", true, 128)).toBe(128);
  });
  it("Flux's transformer takes σ = t / 1000, SD3's takes t", () => {
    expect(transformerTimestep("flux", 750)).toBe(0.75);
    expect(transformerTimestep("sd3", 750)).toBe(750);
  });
});
