import { HybridError } from "@hybrid/client";
import { describe, expect, it } from "vitest";
import { describeError, isUnauthorized, jobError } from "./errors.ts";

const apiError = (status: number, code: string, message: string) =>
  new HybridError({ status, code, message, body: { error: message, code } });

describe("errors as shown", () => {
  it("keeps the API's own message, status and code", () => {
    const e = apiError(400, "invalid_parameter", "width must be a multiple of 8 (got 100).");
    expect(describeError(e)).toEqual({
      message: "width must be a multiple of 8 (got 100).",
      status: 400,
      code: "invalid_parameter",
    });
    expect(isUnauthorized(e)).toBe(false);
    expect(isUnauthorized(apiError(401, "unauthorized", "The API key is not valid."))).toBe(true);
  });

  it("tells aborts and network failures apart from other errors", () => {
    expect(describeError(new DOMException("x", "AbortError")).message).toMatch(/Stopped/);
    expect(describeError(new TypeError("Failed to fetch")).message).toBe(
      "The API did not answer (Failed to fetch).",
    );
    expect(describeError(new Error("boom"))).toEqual({ message: "boom" });
    expect(describeError("odd")).toEqual({ message: "odd" });
  });

  it("shows a job's error with its code", () => {
    expect(jobError(null)).toBeNull();
    expect(jobError({ code: "canceled", message: "Canceled." })).toEqual({
      message: "Canceled.",
      code: "canceled",
    });
  });
});
