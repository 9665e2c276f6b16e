import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { openTestRedis, TEST_REDIS_URL, uniquePrefix } from "./redis.ts";
import { redisTest } from "./vitest.ts";

// A connection of its own, so what the fixtures delete is seen from outside them.
const observer = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
afterAll(() => observer.quit());

describe("uniquePrefix", () => {
  it("names the test, keeps only characters a SCAN pattern takes literally, and never repeats", () => {
    const a = uniquePrefix("Queue: *stalled* [jobs]");
    expect(a).toMatch(/^test-queue-stalled-jobs-[0-9a-f]{12}$/);
    expect(new Set(Array.from({ length: 100 }, () => uniquePrefix("x"))).size).toBe(100);
  });
});

describe("openTestRedis", () => {
  it("deletes every key under its prefix on close, and no one else's", async () => {
    const mine = openTestRedis("mine");
    const theirs = openTestRedis("theirs");
    try {
      await mine.redis.set(mine.key("a"), "1");
      await mine.redis.hset(mine.key("{tagged}", "b"), "f", "v");
      await mine.redis.set(`${mine.prefix}-no-colon`, "1");
      await theirs.redis.set(theirs.key("a"), "1");
      expect((await mine.keys()).sort()).toEqual(
        [mine.key("a"), mine.key("{tagged}", "b"), `${mine.prefix}-no-colon`].sort(),
      );
      await mine.close();
      expect(await observer.exists(mine.key("a"), mine.key("{tagged}", "b"), `${mine.prefix}-no-colon`)).toBe(
        0,
      );
      expect(await observer.get(theirs.key("a"))).toBe("1");
      expect(mine.redis.status).toBe("end");
    } finally {
      await theirs.close();
    }
    expect(await observer.exists(theirs.key("a"))).toBe(0);
  });

  it("cleans up more keys than one command takes", async () => {
    const fixture = openTestRedis("many");
    try {
      const keys = Array.from({ length: 1234 }, (_, i) => fixture.key(String(i)));
      await fixture.redis.mset(...keys.flatMap((k) => [k, "1"]));
      expect(await fixture.cleanup()).toBe(1234);
      expect(await fixture.keys()).toEqual([]);
    } finally {
      await fixture.close();
    }
  });
});

describe("redisTest", () => {
  let seen: { prefix: string; key: string } | undefined;
  redisTest("gives the test a prefix of its own", async ({ testRedis }) => {
    expect(testRedis.prefix).toMatch(/^test-gives-the-test-a-prefix-of-its-own-[0-9a-f]{12}$/);
    await testRedis.redis.set(testRedis.key("k"), "1");
    seen = { prefix: testRedis.prefix, key: testRedis.key("k") };
  });
  afterAll(async () => {
    // After the test's fixture is torn down: its key is gone.
    expect(seen).toBeDefined();
    expect(await observer.exists(seen!.key)).toBe(0);
  });
});
