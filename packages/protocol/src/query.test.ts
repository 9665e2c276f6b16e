import { describe, expect, it } from "vitest";
import type { AppError } from "./errors.ts";
import { checkQuerySizes, MAX_QUERY_VALUE_CHARS, missingShape, parseOrThrow, QueryBool } from "./query.ts";
import { DecodeQuery, EncodeQuery } from "./schemas.ts";

/** What Express's query parser makes of a query string (repeated keys become arrays). */
const q = (s: string) => {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(s)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
};

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as AppError).code;
  }
  return "none";
};

describe("DecodeQuery", () => {
  it("parses the query diffusers' remote_decode sends", () => {
    const parsed = parseOrThrow(
      DecodeQuery,
      q(
        "shape=1&shape=4&shape=64&shape=64&dtype=float16&output_type=pt&partial_postprocess=True&scaling_factor=0.18215&input_tensor_type=binary&output_tensor_type=binary",
      ),
    );
    expect(parsed.shape).toEqual([1, 4, 64, 64]);
    expect(parsed.dtype).toBe("float16");
    expect(parsed.output_type).toBe("pt");
    expect(parsed.partial_postprocess).toBe(true);
    expect(parsed.scaling_factor).toBeCloseTo(0.18215);
    expect(parsed.shift_factor).toBeUndefined();
  });

  it("applies the protocol defaults", () => {
    const parsed = parseOrThrow(DecodeQuery, q("shape=1&shape=4&shape=8&shape=8"));
    expect(parsed).toMatchObject({
      dtype: "float32",
      output_type: "pil",
      image_format: "jpg",
      partial_postprocess: false,
    });
  });

  it("accepts packed-latent height and width, and a JSON or comma shape", () => {
    const parsed = parseOrThrow(DecodeQuery, q("shape=[1,1024,64]&dtype=bfloat16&height=512&width=512"));
    expect(parsed).toMatchObject({ shape: [1, 1024, 64], height: 512, width: 512, dtype: "bfloat16" });
    expect(parseOrThrow(DecodeQuery, q("shape=1,4,8,8")).shape).toEqual([1, 4, 8, 8]);
  });

  it("gives stable codes for each kind of bad parameter", () => {
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("dtype=float16")))).toBe("invalid_shape");
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&shape=-4")))).toBe("invalid_shape");
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&shape=0")))).toBe("invalid_shape");
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&shape=x")))).toBe("invalid_shape");
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&shape=4&dtype=int64")))).toBe("invalid_dtype");
    // uint8 is an answer dtype only: latents come as floats.
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&shape=4&dtype=uint8")))).toBe("invalid_dtype");
    expect(codeOf(() => parseOrThrow(EncodeQuery, q("shape=1&shape=3&shape=8&shape=8&dtype=uint8")))).toBe(
      "invalid_dtype",
    );
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&output_type=gif")))).toBe("invalid_parameter");
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&scaling_factor=abc")))).toBe(
      "invalid_parameter",
    );
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&scaling_factor=")))).toBe("invalid_parameter");
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&height=-5")))).toBe("invalid_parameter");
    expect(codeOf(() => parseOrThrow(DecodeQuery, q("shape=1&partial_postprocess=maybe")))).toBe(
      "invalid_parameter",
    );
  });
});

describe("QueryBool", () => {
  it("accepts Python, JSON and numeric spellings", () => {
    for (const t of ["True", "true", "1", "TRUE"]) expect(QueryBool.parse(t)).toBe(true);
    for (const f of ["False", "false", "0"]) expect(QueryBool.parse(f)).toBe(false);
    expect(QueryBool.safeParse("None").success).toBe(false);
  });
});

describe("EncodeQuery", () => {
  it("parses scaling and an optional tensor description", () => {
    expect(parseOrThrow(EncodeQuery, q("scaling_factor=0.3611&shift_factor=0.1159"))).toMatchObject({
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
      sample: false,
    });
    expect(parseOrThrow(EncodeQuery, q("shape=1&shape=3&shape=64&shape=64&dtype=float16"))).toMatchObject({
      shape: [1, 3, 64, 64],
      dtype: "float16",
    });
  });
});

describe("query size limits", () => {
  it("refuses a value over the cap, a repeated key counted joined, naming the key and the limit", () => {
    const long = "1".repeat(MAX_QUERY_VALUE_CHARS + 1);
    for (const query of [
      q(`output_tensor_type=${long}`),
      q(`x_unknown=${long}`),
      q(`shape=${"1&shape=".repeat(600)}1`),
    ]) {
      let err: AppError | undefined;
      try {
        checkQuerySizes(query);
      } catch (e) {
        err = e as AppError;
      }
      expect(err?.code).toBe("invalid_parameter");
      expect(err?.message).toContain(`over the limit of ${MAX_QUERY_VALUE_CHARS}`);
    }
    expect(() =>
      checkQuerySizes(q("shape=1&shape=4&shape=64&shape=64&dtype=float16&input_tensor_type=binary")),
    ).not.toThrow();
  });

  it("a missing shape says it is required and how to send it", () => {
    const e = missingShape();
    expect(e.code).toBe("invalid_shape");
    expect(e.message).toContain("required");
    expect(e.message).toContain("shape=1&shape=4&shape=64&shape=64");
    expect(e.message).toContain("shape=1,4,64,64");
    // Both spellings it names parse.
    for (const s of ["shape=1&shape=4&shape=64&shape=64", "shape=1,4,64,64"])
      expect(parseOrThrow(DecodeQuery, q(s)).shape).toEqual([1, 4, 64, 64]);
  });
});
