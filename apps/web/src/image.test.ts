import { describe, expect, it } from "vitest";
import { base64ImageType, fitSize } from "./image.ts";

describe("fitSize", () => {
  it("keeps a size that already fits", () => {
    expect(fitSize(256, 128, 512)).toEqual({ width: 256, height: 128 });
  });

  it("scales down to the longest side and rounds down to multiples", () => {
    expect(fitSize(4000, 3000, 512)).toEqual({ width: 512, height: 384 });
    expect(fitSize(1000, 333, 512)).toEqual({ width: 512, height: 168 });
    expect(fitSize(101, 99, 512)).toEqual({ width: 96, height: 96 });
    expect(fitSize(100, 100, 512, 16)).toEqual({ width: 96, height: 96 });
  });

  it("never goes below one multiple", () => {
    expect(fitSize(5, 3, 512)).toEqual({ width: 8, height: 8 });
    expect(fitSize(5000, 10, 512)).toEqual({ width: 512, height: 8 });
  });

  it("keeps every result a multiple within the bound (property loop)", () => {
    for (let w = 1; w < 2000; w += 37)
      for (let h = 1; h < 2000; h += 41) {
        const s = fitSize(w, h, 512);
        expect(s.width % 8 === 0 && s.height % 8 === 0).toBe(true);
        expect(Math.max(s.width, s.height)).toBeLessThanOrEqual(512);
      }
  });
});

describe("base64ImageType", () => {
  it("knows PNG, JPEG and WebP by their first bytes", () => {
    expect(base64ImageType("iVBORw0KGgo")).toBe("image/png");
    expect(base64ImageType("/9j/4AAQ")).toBe("image/jpeg");
    expect(base64ImageType("UklGRiQA")).toBe("image/webp");
    expect(base64ImageType("AAAA")).toBe("application/octet-stream");
  });
});
