import { describe, expect, it } from "vitest";
import { Env } from "./env.ts";
import { checkMemoryBudget, defaultMemoryBudget, formatBytes, parseBytes } from "./memory-budget.ts";

describe("parseBytes", () => {
  it("reads plain, decimal and binary sizes, any case", () => {
    const cases: Array<[string, number]> = [
      ["4000000000", 4_000_000_000],
      ["4e9", 4_000_000_000],
      ["512MiB", 512 * 2 ** 20],
      ["8GiB", 8 * 2 ** 30],
      ["8gib", 8 * 2 ** 30],
      ["1.5 GiB", 1.5 * 2 ** 30],
      ["2GB", 2e9],
      ["2G", 2e9],
      ["64KiB", 65536],
      ["1TiB", 2 ** 40],
      ["100b", 100],
    ];
    for (const [text, bytes] of cases) expect(parseBytes(text), text).toBe(bytes);
  });

  it("refuses what is not a positive size", () => {
    for (const text of ["", "GiB", "-1GiB", "8 parsecs", "0", "1.2.3MiB", "0x10", "Infinity"])
      expect(parseBytes(text), text).toBeNull();
  });

  it("is how MODEL_MEMORY_BUDGET is read; a bad one is a settings error naming it", () => {
    expect(Env.parse({ MODEL_MEMORY_BUDGET: "12GiB" }).MODEL_MEMORY_BUDGET).toBe(12 * 2 ** 30);
    expect(Env.parse({}).MODEL_MEMORY_BUDGET).toBeUndefined();
    const bad = Env.safeParse({ MODEL_MEMORY_BUDGET: "lots" });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]).toMatchObject({ path: ["MODEL_MEMORY_BUDGET"] });
    expect(bad.error!.issues[0]!.message).toContain('"lots"');
  });
});

describe("formatBytes", () => {
  it("uses binary units with three significant digits", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(65536)).toBe("64.0 KiB");
    expect(formatBytes(1.5 * 2 ** 30)).toBe("1.50 GiB");
    expect(formatBytes(23.8 * 2 ** 30)).toBe("23.8 GiB");
  });
});

describe("defaultMemoryBudget", () => {
  it("is 80% of free memory, or of what a container limit leaves the process when less", () => {
    expect(defaultMemoryBudget(10 * 2 ** 30, 0, 0)).toBe(Math.floor(0.8 * 10 * 2 ** 30));
    // cgroup v1 without a limit reports ~2^64.
    expect(defaultMemoryBudget(10 * 2 ** 30, 2 ** 64, 2 ** 28)).toBe(Math.floor(0.8 * 10 * 2 ** 30));
    expect(defaultMemoryBudget(64 * 2 ** 30, 8 * 2 ** 30, 2 ** 30)).toBe(Math.floor(0.8 * 7 * 2 ** 30));
    expect(defaultMemoryBudget()).toBeGreaterThan(0);
  });
});

describe("checkMemoryBudget", () => {
  const flux = { id: "black-forest-labs/FLUX.1-schnell", bytes: 33.8 * 2 ** 30 };
  const sd = { id: "sd-tiny", bytes: 3 * 2 ** 20 };

  it("lets a model set within the budget start", () => {
    expect(checkMemoryBudget([flux, sd], { bytes: 40 * 2 ** 30, explicit: true })).toBeNull();
    // Exactly at the budget still fits.
    expect(checkMemoryBudget([sd], { bytes: sd.bytes, explicit: false })).toBeNull();
  });

  it("refuses one over it, naming each model largest first, the total, the budget and what to do", () => {
    expect(checkMemoryBudget([sd, flux], { bytes: 24 * 2 ** 30, explicit: true })).toBe(
      "the models' weights do not fit this worker's memory budget, refusing to start: " +
        "black-forest-labs/FLUX.1-schnell 33.8 GiB, sd-tiny 3.00 MiB; total 33.8 GiB > budget 24.0 GiB " +
        "(MODEL_MEMORY_BUDGET). Serve fewer models here (MODELS; run other workers for the rest) or raise MODEL_MEMORY_BUDGET.",
    );
    expect(checkMemoryBudget([flux], { bytes: 2 ** 30, explicit: false })).toContain(
      "budget 1.00 GiB (MODEL_MEMORY_BUDGET unset: 80% of free memory)",
    );
  });
});
