import { describe, expect, it } from "vitest";
import { downloadName, eventTime, formatBytes, formatMs, formatShape, percentOf } from "./format.ts";

describe("formatting", () => {
  it("durations", () => {
    expect([null, undefined, Number.NaN].map(formatMs)).toEqual(["—", "—", "—"]);
    expect(formatMs(0)).toBe("0 ms");
    expect(formatMs(849.6)).toBe("850 ms");
    expect(formatMs(9_999)).toBe("9999 ms");
    expect(formatMs(12_345)).toBe("12.3 s");
    expect(formatMs(125_000)).toBe("2 min 5 s");
  });

  it("sizes and shapes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(12_800)).toBe("12.5 KB");
    expect(formatBytes(3.2 * 1024 * 1024)).toBe("3.2 MB");
    expect(formatShape([1, 4, 64, 64])).toBe("1 × 4 × 64 × 64");
  });

  it("event ids as times", () => {
    expect(eventTime("1718185267118-0")?.getTime()).toBe(1718185267118);
    expect(eventTime("")).toBeNull();
    expect(eventTime("x-1")).toBeNull();
  });

  it("percentages", () => {
    expect(percentOf(0, null)).toBe(0);
    expect(percentOf(3, 0)).toBe(0);
    expect(percentOf(1, 3)).toBe(33);
    expect(percentOf(9, 9)).toBe(100);
    expect(percentOf(12, 9)).toBe(100);
  });

  it("download names, a Hub-style id's slash as --", () => {
    expect(downloadName("sd-tiny", 42, "png")).toBe("sd-tiny-42.png");
    expect(downloadName("black-forest-labs/FLUX.1-schnell", 7, "jpg")).toBe(
      "black-forest-labs--FLUX.1-schnell-7.jpg",
    );
  });
});
