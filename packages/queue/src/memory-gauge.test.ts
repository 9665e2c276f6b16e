import { useTestRedis } from "@hybrid/testing/vitest";
import { describe, expect, it } from "vitest";
import { parseMemoryInfo, RedisMemoryGauge } from "./memory-gauge.ts";

const { redis } = useTestRedis("memory-gauge");

describe("RedisMemoryGauge", () => {
  it("reads used_memory and maxmemory out of INFO memory", () => {
    const info =
      "# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\nmaxmemory:4000\r\nmaxmemory_human:3.91K\r\n";
    expect(parseMemoryInfo(info)).toEqual({ used: 1000, max: 4000 });
    expect(parseMemoryInfo("# Memory\r\n")).toEqual({ used: 0, max: 0 });
  });

  it("samples a real Redis, and never reads full without a maxmemory", async () => {
    const changes: boolean[] = [];
    const gauge = new RedisMemoryGauge(redis, {
      highWater: 0.000001,
      intervalMs: 60_000,
      onChange: (full) => changes.push(full),
    });
    await gauge.sample();
    const { used, max } = gauge.last;
    expect(used).toBeGreaterThan(0);
    if (max === 0) {
      gauge.note(Number.MAX_SAFE_INTEGER / 2);
      expect(gauge.full(1)).toBe(false);
      expect(changes).toEqual([]);
    } else {
      // A Redis with a limit: this mark is far below what it holds.
      expect(gauge.full()).toBe(true);
      expect(changes).toEqual([true]);
    }
  });

  it("counts the bytes noted since the last sample until the next one", async () => {
    const gauge = new RedisMemoryGauge(redis, { highWater: 0.5, intervalMs: 60_000 });
    await gauge.sample();
    // A reading as if Redis had a 100 MB limit and held 40 MB.
    Object.assign(gauge, { reading: { used: 40e6, max: 100e6 } });
    expect(gauge.full()).toBe(false);
    expect(gauge.full(10e6)).toBe(true);
    gauge.note(9e6);
    expect(gauge.full()).toBe(false);
    expect(gauge.full(1e6)).toBe(true);
  });
});
