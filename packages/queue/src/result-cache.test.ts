import { useTestRedis } from "@hybrid/testing/vitest";
import { describe, expect, it } from "vitest";
import { resultCacheIndexKey, resultCacheKey } from "./names.ts";
import { ResultCache } from "./result-cache.ts";

// A key prefix of this file's own on the shared Redis; its keys are deleted after the file.
const { prefix, redis } = useTestRedis("result-cache");

const answer = (n: number, fill: number) => ({
  result: { result: "k", contentType: "image/png", bytes: n, timings: { readMs: 1, runMs: 2, writeMs: 3 } },
  bytes: Buffer.alloc(n, fill),
});

describe("ResultCache", () => {
  it("keeps each owner's answers to itself, without the run's timings", async () => {
    const cache = new ResultCache(redis, `${prefix}:own`, 60, 1 << 20);
    const a = answer(100, 1);
    await cache.put("key-a", "same-hash", a.result, a.bytes);
    const hit = await cache.get("key-a", "same-hash");
    expect(hit?.bytes.equals(a.bytes)).toBe(true);
    expect(hit?.result).toEqual({ result: "k", contentType: "image/png", bytes: 100 });
    // The same request by another key is a miss: its own cache holds nothing yet.
    expect(await cache.get("key-b", "same-hash")).toBeNull();
    const b = answer(100, 2);
    await cache.put("key-b", "same-hash", b.result, b.bytes);
    expect((await cache.get("key-b", "same-hash"))?.bytes.equals(b.bytes)).toBe(true);
    expect((await cache.get("key-a", "same-hash"))?.bytes.equals(a.bytes)).toBe(true);
  });

  it("holds at most its byte budget, evicting the oldest answers first", async () => {
    const p = `${prefix}:budget`;
    const cache = new ResultCache(redis, p, 60, 1000);
    for (let i = 0; i < 4; i++) {
      const a = answer(300, i);
      await cache.put("o", `h${i}`, a.result, a.bytes);
    }
    // 4 × 300 bytes in a 1000-byte budget: the first one went, its key deleted.
    expect(await cache.get("o", "h0")).toBeNull();
    expect(await redis.exists(resultCacheKey(p, "o", "h0"))).toBe(0);
    for (const h of ["h1", "h2", "h3"]) expect(await cache.get("o", h), h).not.toBeNull();
    expect(Number(await redis.get(resultCacheIndexKey(p, "bytes")))).toBe(900);
    // A bigger answer evicts as many of the oldest as it needs.
    const big = answer(700, 9);
    await cache.put("other", "big", big.result, big.bytes);
    expect(await cache.get("o", "h1")).toBeNull();
    expect(await cache.get("o", "h2")).toBeNull();
    expect(await cache.get("o", "h3")).not.toBeNull();
    expect(await cache.get("other", "big")).not.toBeNull();
    expect(Number(await redis.get(resultCacheIndexKey(p, "bytes")))).toBe(1000);
    // Putting an answer again replaces its size instead of adding to the total.
    await cache.put("other", "big", big.result, big.bytes);
    expect(Number(await redis.get(resultCacheIndexKey(p, "bytes")))).toBe(1000);
    // One larger than the whole budget is not cached (it would evict everything, itself too).
    const huge = answer(1001, 7);
    await cache.put("o", "huge", huge.result, huge.bytes);
    expect(await cache.get("o", "huge")).toBeNull();
    expect(await cache.get("o", "h3")).not.toBeNull();
  });
});
