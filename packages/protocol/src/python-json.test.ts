import { describe, expect, it } from "vitest";
import { parsePythonJson } from "./python-json.ts";

describe("parsePythonJson", () => {
  it("reads the bare Infinity/NaN Python's json writes, and nothing inside strings", () => {
    expect(parsePythonJson('{"lambda_min_clipped": -Infinity, "a": [NaN, Infinity], "s": "NaN"}')).toEqual({
      lambda_min_clipped: Number.NEGATIVE_INFINITY,
      a: [Number.NaN, Number.POSITIVE_INFINITY],
      s: "NaN",
    });
  });

  it("still refuses text that is not JSON", () => {
    expect(() => parsePythonJson('{"a": Infinityx}')).toThrow(SyntaxError);
  });
});
