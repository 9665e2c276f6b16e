import { describe, expect, it } from "vitest";
import {
  AppError,
  ErrorCode,
  INTERNAL_JOB_ERROR,
  parseJobError,
  publicError,
  serializeJobError,
} from "./errors.ts";

describe("AppError", () => {
  it("answers each code with the status clients were promised", () => {
    // Written out, not read from errorStatus: a status is part of the wire contract, so changing
    // one (or adding a code without choosing its status here) must fail this test.
    const promised: Record<string, number> = {
      invalid_request: 400,
      unauthorized: 401,
      forbidden: 403,
      invalid_parameter: 400,
      invalid_shape: 400,
      invalid_dtype: 400,
      invalid_body_length: 400,
      missing_dimensions: 400,
      empty_body: 400,
      invalid_image: 400,
      unsupported_media_type: 415,
      unsupported_operation: 400,
      too_large: 413,
      payload_too_large: 413,
      unknown_model: 404,
      not_found: 404,
      method_not_allowed: 405,
      overloaded: 429,
      rate_limited: 429,
      too_many_queued: 429,
      job_not_finished: 409,
      canceled: 409,
      idempotency_conflict: 422,
      invalid_webhook: 400,
      model_loading: 503,
      no_workers: 503,
      unavailable: 503,
      timeout: 504,
      payload_expired: 410,
      internal: 500,
    };
    const actual = Object.fromEntries(
      ErrorCode.options.map((code) => [code, new AppError(code, "x").status]),
    );
    expect(actual).toEqual(promised);
    expect(new AppError("internal", "x", { status: 502 }).status).toBe(502);
  });

  it("keeps its code and message across a job failure", () => {
    const back = parseJobError(serializeJobError(new AppError("invalid_image", "not an image")));
    expect(back.code).toBe("invalid_image");
    expect(back.message).toBe("not an image");
    expect(parseJobError("TypeError: boom").code).toBe("internal");
    expect(parseJobError(undefined).code).toBe("internal");
  });

  it("never hands a client an internal failure's text", () => {
    const leaky =
      "ENOENT: no such file or directory, open '/srv/models/sd/vocab.json'\n    at readFile (node:fs)";
    for (const reason of [
      leaky,
      serializeJobError(new AppError("internal", leaky)),
      "job stalled more than allowable limit",
    ]) {
      const e = parseJobError(reason);
      expect(e.code).toBe("internal");
      expect(e.message).toBe(INTERNAL_JOB_ERROR);
      expect(JSON.stringify(e.toBody())).not.toMatch(/srv|ENOENT|stalled/);
    }
    // Bad input is the client's own: its sentence is kept.
    const bad = new AppError("invalid_shape", "shape must have 4 dimensions");
    expect(publicError(bad)).toBe(bad);
    const internal = publicError(new AppError("internal", `${leaky} in /srv/models`));
    expect(internal.toBody()).toEqual({ code: "internal", error: INTERNAL_JOB_ERROR });
    const down = publicError(
      new AppError("unavailable", "GET https://hub.internal/x: ECONNREFUSED 10.0.0.7:443"),
    );
    expect(down.code).toBe("unavailable");
    expect(down.message).not.toMatch(/hub\.internal|10\.0\.0\.7/);
  });
});
