import { describe, expect, it } from "vitest";
import { AppError } from "./errors.ts";
import { checkTensorBytes, decodeToFloat32, elementCount, encodeFromFloat32 } from "./tensor.ts";

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return (e as AppError).code;
  }
  throw new Error("expected an AppError");
};

describe("elementCount", () => {
  it("multiplies dimensions", () => {
    expect(elementCount([1, 4, 64, 64])).toBe(16384);
    expect(elementCount([7])).toBe(7);
  });
  it("rejects empty, zero, negative and fractional shapes", () => {
    expect(codeOf(() => elementCount([]))).toBe("invalid_shape");
    expect(codeOf(() => elementCount([1, 0, 4]))).toBe("invalid_shape");
    expect(codeOf(() => elementCount([1, -4, 4]))).toBe("invalid_shape");
    expect(codeOf(() => elementCount([1.5]))).toBe("invalid_shape");
  });
  it("rejects huge shapes before multiplying past safe integers", () => {
    expect(codeOf(() => elementCount([2 ** 20, 2 ** 20, 2 ** 20]))).toBe("too_large");
    expect(codeOf(() => elementCount([1, 4, 1 << 13, 1 << 13]))).toBe("too_large");
    expect(codeOf(() => elementCount([10], { maxElements: 9 }))).toBe("too_large");
  });
});

describe("checkTensorBytes", () => {
  it("requires the exact byte length for the dtype", () => {
    expect(checkTensorBytes(32, [2, 4], "float32")).toBe(8);
    expect(checkTensorBytes(16, [2, 4], "float16")).toBe(8);
    expect(codeOf(() => checkTensorBytes(31, [2, 4], "float32"))).toBe("invalid_body_length");
    expect(codeOf(() => checkTensorBytes(32, [2, 4], "bfloat16"))).toBe("invalid_body_length");
    expect(codeOf(() => checkTensorBytes(0, [1], "uint8"))).toBe("invalid_body_length");
  });
});

describe("decode/encode", () => {
  const values = new Float32Array([0, -1, 1, 0.5, -0.25, 3.5, 65504, -7]);

  for (const dtype of ["float32", "float16", "bfloat16"] as const) {
    it(`round-trips exactly representable values through ${dtype}`, () => {
      const bytes = encodeFromFloat32(values, dtype);
      expect(bytes.byteLength).toBe(values.length * (dtype === "float32" ? 4 : 2));
      const back = decodeToFloat32(bytes, [2, 4], dtype);
      const expected = dtype === "bfloat16" ? values.map((v) => (v === 65504 ? 65536 : v)) : values;
      expect(Array.from(back)).toEqual(Array.from(expected));
    });
  }

  it("reads little-endian bytes (golden fixture)", () => {
    // 1.0f, -2.0f as float32 LE; 1.0, -2.0 as float16 LE; as bfloat16 LE
    expect(
      Array.from(decodeToFloat32(Uint8Array.from([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]), [2], "float32")),
    ).toEqual([1, -2]);
    expect(Array.from(decodeToFloat32(Uint8Array.from([0, 0x3c, 0, 0xc0]), [2], "float16"))).toEqual([1, -2]);
    expect(Array.from(decodeToFloat32(Uint8Array.from([0x80, 0x3f, 0, 0xc0]), [2], "bfloat16"))).toEqual([
      1, -2,
    ]);
    expect(Array.from(encodeFromFloat32(new Float32Array([1, -2]), "float16"))).toEqual([0, 0x3c, 0, 0xc0]);
  });

  it("accepts a body that sits at an odd offset of its buffer", () => {
    const backing = new Uint8Array(9);
    backing.set(encodeFromFloat32(new Float32Array([1.5, -3]), "float32"), 1);
    expect(Array.from(decodeToFloat32(backing.subarray(1), [1, 2], "float32"))).toEqual([1.5, -3]);
  });

  it("does not alias the caller's buffer when decoding float32", () => {
    const bytes = encodeFromFloat32(new Float32Array([1, 2]), "float32");
    const out = decodeToFloat32(bytes, [2], "float32");
    out[0] = 42;
    expect(Array.from(decodeToFloat32(bytes, [2], "float32"))).toEqual([1, 2]);
  });

  it("carries NaN and Inf through every float dtype", () => {
    const special = new Float32Array([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
    for (const dtype of ["float32", "float16", "bfloat16"] as const) {
      const back = decodeToFloat32(encodeFromFloat32(special, dtype), [3], dtype);
      expect(Number.isNaN(back[0])).toBe(true);
      expect(back[1]).toBe(Number.POSITIVE_INFINITY);
      expect(back[2]).toBe(Number.NEGATIVE_INFINITY);
    }
  });

  it("saturates uint8 and maps NaN to 0", () => {
    expect(
      Array.from(encodeFromFloat32(new Float32Array([-5, 0, 127.4, 127.6, 300, Number.NaN]), "uint8")),
    ).toEqual([0, 0, 127, 128, 255, 0]);
  });
});
