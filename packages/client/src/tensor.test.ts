import { encodeFromFloat32, float32ToBfloat16, float32ToFloat16 } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { decodeTensor, encodeTensor } from "./tensor.ts";

// Values that exercise the half formats: zeros, subnormals, rounding ties, overflow, NaN.
const VALUES = new Float32Array([
  0,
  -0,
  1,
  -1,
  0.5,
  0.1,
  65504,
  70000,
  6e-8,
  1e-10,
  Math.PI,
  -Math.E,
  1 / 3,
  Number.NaN,
  Number.POSITIVE_INFINITY,
]);

/** What a float16/bfloat16 round trip of VALUES gives: what the server's bytes decode to. */
const roundTrip = (dtype: "float16" | "bfloat16") => {
  const bytes = encodeFromFloat32(VALUES, dtype);
  return decodeTensor(bytes, `[${VALUES.length}]`, dtype);
};

describe("decodeTensor", () => {
  it("widens float16 bit-exactly, as the protocol's codec does", () => {
    const out = roundTrip("float16");
    expect(out.dtype).toBe("float16");
    expect(out.data).toBeInstanceOf(Float32Array);
    expect(Array.from(out.data)).toEqual([
      0,
      -0,
      1,
      -1,
      0.5,
      0.0999755859375,
      65504,
      Number.POSITIVE_INFINITY,
      2 ** -24,
      0,
      3.140625,
      -2.71875,
      0.333251953125,
      Number.NaN,
      Number.POSITIVE_INFINITY,
    ]);
  });

  it("widens bfloat16 bit-exactly", () => {
    const out = roundTrip("bfloat16");
    const bits = float32ToBfloat16(VALUES);
    const expected = new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer);
    expect(Array.from(out.data)).toEqual(Array.from(expected));
    expect(out.data[2]).toBe(1);
    expect(out.data[11]).toBe(-2.71875);
  });

  it("keeps uint8 as bytes and reads float32, from an odd byte offset too", () => {
    const bytes = new Uint8Array([9, 1, 2, 3, 4, 5, 6]).subarray(1);
    const u8 = decodeTensor(bytes, "[1, 2, 3]", "uint8");
    expect(u8).toEqual({ kind: "tensor", dtype: "uint8", shape: [1, 2, 3], data: bytes });
    const f32 = new Float32Array([1.5, -2, 1e-20]);
    const shifted = new Uint8Array(13);
    shifted.set(new Uint8Array(f32.buffer), 1);
    const out = decodeTensor(shifted.subarray(1), "[3]", "float32");
    expect(Array.from(out.data)).toEqual(Array.from(f32));
  });

  it("refuses a body that does not fit its headers", () => {
    expect(() => decodeTensor(new Uint8Array(6), "[1, 2]", "float16")).toThrow(/needs 4/);
    expect(() => decodeTensor(new Uint8Array(4), "1,2", "float16")).toThrow(/shape header/);
    expect(() => decodeTensor(new Uint8Array(4), "[2]", "int16")).toThrow(/dtype header/);
  });
});

describe("encodeTensor", () => {
  it("converts float32 values to the wire dtype with the protocol's rounding", () => {
    const shape = [1, VALUES.length];
    expect(encodeTensor({ data: VALUES, shape }).bytes).toEqual(new Uint8Array(VALUES.buffer));
    const f16 = encodeTensor({ data: VALUES, shape, dtype: "float16" });
    expect(f16.dtype).toBe("float16");
    expect(f16.bytes).toEqual(new Uint8Array(float32ToFloat16(VALUES).buffer));
    const bf16 = encodeTensor({ data: VALUES, shape, dtype: "bfloat16" });
    expect(bf16.bytes).toEqual(new Uint8Array(float32ToBfloat16(VALUES).buffer));
  });

  it("sends float16/bfloat16 bits and raw bytes as they are", () => {
    const bits = float32ToFloat16(VALUES);
    const t = encodeTensor({ data: bits, shape: [VALUES.length] });
    expect([t.dtype, t.shape]).toEqual(["float16", [VALUES.length]]);
    expect(t.bytes).toEqual(new Uint8Array(bits.buffer));
    const raw = new Uint8Array(8);
    expect(encodeTensor({ data: raw, shape: [2, 2], dtype: "bfloat16" }).bytes).toBe(raw);
  });

  it("refuses a mismatched length, a bad shape, or an ambiguous dtype", () => {
    expect(() => encodeTensor({ data: new Float32Array(3), shape: [2, 2] })).toThrow(RangeError);
    expect(() => encodeTensor({ data: new Float32Array(4), shape: [2, 0, 2] })).toThrow(/positive integer/);
    expect(() => encodeTensor({ data: new Uint16Array(4), shape: [4], dtype: "float32" })).toThrow(TypeError);
    expect(() => encodeTensor({ data: new Uint8Array(16), shape: [4] })).toThrow(/need a dtype/);
    expect(() => encodeTensor({ data: new Uint8Array(15), shape: [4], dtype: "float32" })).toThrow(
      /16 bytes/,
    );
  });
});
