import { describe, expect, it } from "vitest";
import { GenerateHeaders, headerFlag, SubmitHeaders } from "./request-headers.ts";

describe("headerFlag", () => {
  it("flips its fallback only on the opposite word, in any case", () => {
    for (const value of [undefined, "", "yes", "1", "0", "no", "true,true", ["true"], ["false", "x"]]) {
      expect(headerFlag(value, true), String(value)).toBe(true);
      expect(headerFlag(value, false), String(value)).toBe(value?.toString() === "true");
    }
    for (const value of ["false", "FALSE", "False"]) expect(headerFlag(value, true)).toBe(false);
    for (const value of ["true", "TRUE", "True"]) expect(headerFlag(value, false)).toBe(true);
  });
});

describe("the request headers", () => {
  it("name every header the submit path reads, and the cache switch for generations", () => {
    expect(Object.keys(SubmitHeaders.shape)).toEqual([
      "Prefer",
      "Idempotency-Key",
      "X-Webhook-Url",
      "X-Webhook-Events",
      "x-wait-for-model",
    ]);
    expect(Object.keys(GenerateHeaders.shape)).toEqual([...Object.keys(SubmitHeaders.shape), "x-use-cache"]);
  });

  it("refuse an Idempotency-Key outside visible ASCII or longer than 255", () => {
    expect(SubmitHeaders.safeParse({ "Idempotency-Key": "k-1" }).success).toBe(true);
    expect(SubmitHeaders.safeParse({ "Idempotency-Key": "a b" }).success).toBe(false);
    expect(SubmitHeaders.safeParse({ "Idempotency-Key": "k".repeat(256) }).success).toBe(false);
  });
});
