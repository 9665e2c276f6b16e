import { describe, expect, it } from "vitest";
import {
  denormalize,
  denormalizeValue,
  imageToNCHW,
  sliceFirst,
  toUint8ChannelsLast,
  toUnitRangeNCHW,
} from "./postprocess.ts";

/** A tensor whose every element encodes its own index, so a transposed element shows where it came from. */
function indexed(shape: number[], f: (i: number) => number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, (_, i) => f(i));
}

/** The [-1, 1] value that `toUint8ChannelsLast` turns into byte `k` (exactly, no rounding involved). */
const forByte = (k: number) => (k / 255) * 2 - 1;

describe("denormalize", () => {
  it("maps [-1, 1] to [0, 1], clamps outside, and sends NaN to 0", () => {
    const x = new Float32Array([
      -1,
      0,
      1,
      0.5,
      -3,
      3,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ]);
    expect([...denormalize(x)]).toEqual([0, 0.5, 1, 0.75, 0, 1, 0, 1, 0]);
    expect(denormalizeValue(Number.NaN)).toBe(0);
    expect(denormalizeValue(-0.5)).toBe(0.25);
  });
});

describe("toUint8ChannelsLast", () => {
  it("gets the boundaries, clamping, NaN and ties (half to even) right", () => {
    // One pixel per value, in the red channel; green and blue are zeros.
    const reds = [-1, 1, 0, -2, 2, Number.NaN, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY];
    const x = new Float32Array(3 * reds.length);
    x.set(reds);
    const { data, shape } = toUint8ChannelsLast(x, [1, 3, 1, reds.length]);
    expect(shape).toEqual([1, 1, reds.length, 3]);
    // 0 → 127.5 → 128 under both half-to-even and half-up.
    expect(reds.map((_, i) => data[i * 3])).toEqual([0, 255, 128, 0, 255, 0, 0, 255]);
    expect(data[1]).toBe(128); // a green zero
  });

  it("rounds exact float32 ties to even, like numpy's round()", () => {
    // Float32 inputs whose (x / 2 + 0.5) * 255, computed in float32, is exactly 128.5, 253.5, 254.5.
    const ties = [0.00784307811409235, 0.9882351756095886, 0.996078372001648];
    const x = new Float32Array(9);
    x.set(ties);
    for (const t of x.subarray(0, 3)) expect(Math.fround(Math.fround(t * 0.5 + 0.5) * 255) % 1).toBe(0.5);
    const { data } = toUint8ChannelsLast(x, [1, 3, 1, 3]);
    // Half up would give 129, 254, 255.
    expect([data[0], data[3], data[6]]).toEqual([128, 254, 254]);
  });

  it("transposes a batch of non-square images to [B,H,W,3]", () => {
    const [B, H, W] = [2, 3, 5];
    // Element (b, c, y, x) holds byte 10*c + 50*b + 3*y + x — all distinct per (b, y, x) and channel.
    const byteAt = (b: number, c: number, y: number, x: number) =>
      10 * c + 50 * b + 3 * y + x + (c === 2 ? 100 : 0);
    const x = new Float32Array(B * 3 * H * W);
    for (let b = 0; b < B; b++)
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < H; y++)
          for (let xx = 0; xx < W; xx++) x[((b * 3 + c) * H + y) * W + xx] = forByte(byteAt(b, c, y, xx));
    const { data, shape } = toUint8ChannelsLast(x, [B, 3, H, W]);
    expect(shape).toEqual([B, H, W, 3]);
    for (let b = 0; b < B; b++)
      for (let y = 0; y < H; y++)
        for (let xx = 0; xx < W; xx++)
          for (let c = 0; c < 3; c++) expect(data[((b * H + y) * W + xx) * 3 + c]).toBe(byteAt(b, c, y, xx));
    // Spot checks that do not rely on the loops above mirroring the implementation.
    expect([data[0], data[1], data[2]]).toEqual([0, 10, 120]); // b0 y0 x0
    expect([data[3], data[4], data[5]]).toEqual([1, 11, 121]); // b0 y0 x1
    expect(data[(1 * H * W + 2 * W + 4) * 3 + 1]).toBe(10 + 50 + 6 + 4); // b1 y2 x4, green
  });

  it("flattens video [B,3,F,H,W] into frames [B*F,H,W,3]", () => {
    const [B, F, H, W] = [2, 3, 2, 3];
    const byteAt = (b: number, c: number, f: number, p: number) => 100 * b + 30 * f + 10 * c + p;
    const x = new Float32Array(B * 3 * F * H * W);
    for (let b = 0; b < B; b++)
      for (let c = 0; c < 3; c++)
        for (let f = 0; f < F; f++)
          for (let p = 0; p < H * W; p++) x[((b * 3 + c) * F + f) * H * W + p] = forByte(byteAt(b, c, f, p));
    const { data, shape } = toUint8ChannelsLast(x, [B, 3, F, H, W]);
    expect(shape).toEqual([B * F, H, W, 3]);
    for (let b = 0; b < B; b++)
      for (let f = 0; f < F; f++)
        for (let p = 0; p < H * W; p++)
          for (let c = 0; c < 3; c++)
            expect(data[((b * F + f) * H * W + p) * 3 + c]).toBe(byteAt(b, c, f, p));
    // Frame 4 is batch 1, frame 1: its first pixel's blue.
    expect(data[4 * H * W * 3 + 2]).toBe(100 + 30 + 20);
  });

  it("rejects shapes that do not describe the data", () => {
    expect(() => toUint8ChannelsLast(new Float32Array(12), [1, 4, 1, 3])).toThrow(/3 colour channels/);
    expect(() => toUint8ChannelsLast(new Float32Array(10), [1, 3, 2, 2])).toThrow(/needs 12 values/);
    expect(() => toUint8ChannelsLast(new Float32Array(12), [3, 2, 2])).toThrow(RangeError);
  });
});

describe("toUnitRangeNCHW", () => {
  it("denormalizes images in place of layout", () => {
    const x = new Float32Array([-1, 0, 1, 2, -2, Number.NaN]);
    const { data, shape } = toUnitRangeNCHW(x, [1, 3, 1, 2]);
    expect(shape).toEqual([1, 3, 1, 2]);
    expect([...data]).toEqual([0, 0.5, 1, 1, 0, 0]);
  });

  it("turns video [B,3,F,H,W] into frames-as-batch [B*F,3,H,W]", () => {
    const [B, F, H, W] = [2, 3, 2, 3];
    const plane = H * W;
    // Element value encodes (b, c, f, p); in [-1, 1] so denormalize is an exact affine map.
    const code = (b: number, c: number, f: number, p: number) => (((b * 3 + c) * F + f) * plane + p) / 1024;
    const x = indexed([B, 3, F, H, W], (i) => i / 1024);
    const { data, shape } = toUnitRangeNCHW(x, [B, 3, F, H, W]);
    expect(shape).toEqual([B * F, 3, H, W]);
    for (let b = 0; b < B; b++)
      for (let f = 0; f < F; f++)
        for (let c = 0; c < 3; c++)
          for (let p = 0; p < plane; p++) {
            const got = data[((b * F + f) * 3 + c) * H * W + p];
            expect(got).toBe(Math.fround(code(b, c, f, p) / 2 + 0.5));
          }
    // Output frame 1 (b0 f1), green plane, pixel 0 came from input index ((0*3+1)*3+1)*6 = 24.
    expect(data[(1 * 3 + 1) * plane]).toBe(Math.fround(24 / 1024 / 2 + 0.5));
  });
});

describe("sliceFirst", () => {
  it("views the first batch entry without copying", () => {
    const x = indexed([3, 2, 2], (i) => i);
    const first = sliceFirst(x, [3, 2, 2]);
    expect(first.shape).toEqual([1, 2, 2]);
    expect([...first.data]).toEqual([0, 1, 2, 3]);
    expect(first.data.buffer).toBe(x.buffer);
    expect(() => sliceFirst(x, [0, 2, 2])).toThrow(RangeError);
  });
});

describe("imageToNCHW", () => {
  it("maps bytes to [-1, 1] planes and drops alpha", () => {
    // 2x1 RGBA: pixel 0 = (0, 255, 128, 7), pixel 1 = (255, 0, 51, 9).
    const rgba = new Uint8Array([0, 255, 128, 7, 255, 0, 51, 9]);
    const out = imageToNCHW(rgba, 2, 1, 4);
    expect(out.length).toBe(6);
    expect([out[0], out[1]]).toEqual([-1, 1]); // R plane
    expect([out[2], out[3]]).toEqual([1, -1]); // G plane
    expect(out[4]).toBeCloseTo(128 / 127.5 - 1, 6); // B plane
    expect(out[5]).toBeCloseTo(51 / 127.5 - 1, 6);
  });

  it("matches diffusers' float32 2 * (x / 255) - 1 exactly, and lays out a non-square RGB image", () => {
    const [W, H] = [5, 3];
    const rgb = Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * 37) % 256);
    const out = imageToNCHW(rgb, W, H, 3);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < 3; c++) {
          const v = rgb[(y * W + x) * 3 + c]!;
          expect(out[(c * H + y) * W + x]).toBe(Math.fround(2 * Math.fround(v / 255) - 1));
        }
  });

  it("rejects wrong channel counts and lengths", () => {
    expect(() => imageToNCHW(new Uint8Array(4), 2, 1, 2)).toThrow(/3 or 4 channels/);
    expect(() => imageToNCHW(new Uint8Array(5), 2, 1, 3)).toThrow(/needs 6 bytes/);
  });
});
