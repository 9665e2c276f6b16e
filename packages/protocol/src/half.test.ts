import { describe, expect, it } from "vitest";
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from "./half.ts";

const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;
const fromBits = (b: number) => new Float32Array(new Uint32Array([b]).buffer)[0]!;
const half = (x: number) => float32ToFloat16(new Float32Array([x]))[0]!;
const bf16 = (x: number) => float32ToBfloat16(new Float32Array([x]))[0]!;

describe("float16", () => {
  it("encodes golden bit patterns", () => {
    const golden: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [0.1, 0x2e66],
      [65504, 0x7bff],
      [65519, 0x7bff], // below the midpoint to 65536
      [65520, 0x7c00], // tie rounds to even: 65536, which is Inf in half
      [1e9, 0x7c00],
      [-1e9, 0xfc00],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and 2^-24 rounds to even (0)
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal steps: even is 2
      [-(2 ** -30), 0x8000],
      [1 + 2 ** -11, 0x3c00], // tie at 1.0: even mantissa stays
      [1 + 3 * 2 ** -11, 0x3c02], // tie at odd mantissa rounds up
    ];
    for (const [x, bits] of golden) expect(half(x), `half(${x})`).toBe(bits);
  });

  it("keeps NaN a NaN, including NaNs whose payload lives only in low bits", () => {
    for (const b of [0x7fc00000, 0x7f800001, 0xffc00000, 0x7f800fff]) {
      const h = half(fromBits(b));
      expect(h & 0x7c00).toBe(0x7c00);
      expect(h & 0x3ff).not.toBe(0);
    }
    expect(Number.isNaN(float16ToFloat32(new Uint16Array([0x7e00]))[0])).toBe(true);
  });

  it("round-trips every finite half exactly (all 63488 of them)", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const finite = all.filter((h) => (h & 0x7c00) !== 0x7c00);
    const back = float32ToFloat16(float16ToFloat32(finite));
    expect(Buffer.from(back.buffer).equals(Buffer.from(finite.buffer))).toBe(true);
  });

  it("decodes subnormals, infinities and signed zero", () => {
    const f = float16ToFloat32(new Uint16Array([0x0001, 0x03ff, 0x8001, 0x7c00, 0xfc00, 0x8000]));
    expect(f[0]).toBe(2 ** -24);
    expect(f[1]).toBe(1023 * 2 ** -24);
    expect(f[2]).toBe(-(2 ** -24));
    expect(f[3]).toBe(Number.POSITIVE_INFINITY);
    expect(f[4]).toBe(Number.NEGATIVE_INFINITY);
    expect(Object.is(f[5], -0)).toBe(true);
  });

  it("rounds random floats to the nearest half, ties to even (against a search of all halves)", () => {
    const positives = float16ToFloat32(new Uint16Array(0x7c00).map((_, i) => i)); // 0 .. 65504, increasing
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed;
    };
    for (let k = 0; k < 20000; k++) {
      // finite float32s of magnitude up to ~2^17, biased to the half range
      const exp = 100 + (rand() % 44);
      const b = ((rand() & 1) << 31) | (exp << 23) | (rand() & 0x7fffff);
      const x = fromBits(b >>> 0);
      const ax = Math.abs(x);
      let expected: number;
      if (ax >= 65520) expected = 0x7c00;
      else {
        let lo = 0;
        let hi = positives.length - 1;
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (positives[mid]! <= ax) lo = mid;
          else hi = mid - 1;
        }
        const up = lo + 1;
        if (up >= positives.length) expected = lo;
        else {
          const dLo = ax - positives[lo]!;
          const dUp = positives[up]! - ax;
          expected = dLo < dUp ? lo : dUp < dLo ? up : lo % 2 === 0 ? lo : up;
        }
      }
      if (x < 0) expected |= 0x8000;
      expect(half(x), `x=${x} bits=${bitsOf(x).toString(16)}`).toBe(expected);
    }
  });

  it("handles empty and odd-length arrays and writes into a given buffer", () => {
    expect(float32ToFloat16(new Float32Array(0)).length).toBe(0);
    const odd = float32ToFloat16(new Float32Array([1, 2, 3]));
    expect(Array.from(float16ToFloat32(odd))).toEqual([1, 2, 3]);
    const out = new Uint16Array(3);
    expect(float32ToFloat16(new Float32Array([1, 2, 3]), out)).toBe(out);
  });
});

describe("bfloat16", () => {
  it("encodes golden bit patterns with round-to-nearest-even", () => {
    expect(bf16(1)).toBe(0x3f80);
    expect(bf16(-2)).toBe(0xc000);
    expect(bf16(0.1)).toBe(0x3dcd);
    expect(bf16(Math.PI)).toBe(0x4049);
    expect(bf16(fromBits(0x3f808000))).toBe(0x3f80); // tie, even stays
    expect(bf16(fromBits(0x3f818000))).toBe(0x3f82); // tie, odd rounds up
    expect(bf16(fromBits(0x7f7fffff))).toBe(0x7f80); // max float rounds to Inf
    expect(bf16(Number.NEGATIVE_INFINITY)).toBe(0xff80);
    expect(bf16(fromBits(0x00000001))).toBe(0x0000); // float32 subnormal
    expect(bf16(fromBits(0x00018000))).toBe(0x0002);
  });

  it("keeps NaN a NaN even when only low mantissa bits are set", () => {
    const h = bf16(fromBits(0x7f800001));
    expect(Number.isNaN(bfloat16ToFloat32(new Uint16Array([h]))[0])).toBe(true);
  });

  it("round-trips every finite bfloat16 exactly", () => {
    const all = new Uint16Array(65536).map((_, i) => i).filter((h) => (h & 0x7f80) !== 0x7f80);
    const back = float32ToBfloat16(bfloat16ToFloat32(all));
    expect(Buffer.from(back.buffer).equals(Buffer.from(all.buffer))).toBe(true);
  });
});
