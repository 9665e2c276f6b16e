import { describe, expect, it } from "vitest";
import { AppError, ErrorCode, errorStatus, parseJobError, serializeJobError } from "./errors.ts";

describe("AppError", () => {
  it("maps every code to a status, bad input to 4xx", () => {
    for (const code of ErrorCode.options) {
      const status = new AppError(code, "x").status;
      expect(status).toBe(errorStatus[code]);
      expect(status >= 400 && status < 600).toBe(true);
    }
    expect(new AppError("invalid_shape", "x").status).toBe(400);
    expect(new AppError("overloaded", "x").status).toBe(429);
    expect(new AppError("internal", "x").status).toBe(500);
  });

  it("keeps its code and message across a job failure", () => {
    const back = parseJobError(serializeJobError(new AppError("invalid_image", "not an image")));
    expect(back.code).toBe("invalid_image");
    expect(back.message).toBe("not an image");
    expect(parseJobError("TypeError: boom").code).toBe("internal");
    expect(parseJobError(undefined).code).toBe("internal");
  });
});
