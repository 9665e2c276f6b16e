import { AppError } from "@hybrid/protocol";
import { useTestRedis } from "@hybrid/testing/vitest";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import type { ApiKeyRecord } from "./keys.ts";
import { KeyRateLimiter } from "./rate-limit.ts";

const { url, prefix, redis } = useTestRedis("api-ratelimit");
// A second API instance's connection: limits are shared through Redis, not process memory.
const other = new Redis(url, { maxRetriesPerRequest: 1 });
afterAll(() => other.quit());

const record = (id: string, ratePerMinute: number | null): ApiKeyRecord => ({
  id,
  name: id,
  hash: "0".repeat(64),
  models: null,
  rate_per_minute: ratePerMinute,
  max_queued: null,
  webhook_secret: "whsec_AAAA",
  created_at: new Date().toISOString(),
});

const rejection = async (p: Promise<unknown>): Promise<AppError> => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AppError);
  return e as AppError;
};

describe("KeyRateLimiter", () => {
  it("allows N requests a minute, then answers rate_limited with a Retry-After", async () => {
    const limiter = new KeyRateLimiter(redis, prefix);
    const key = record("aaaaaaaaaaaaaaaa", 3);
    for (let i = 0; i < 3; i++) await limiter.consume(key);

    const e = await rejection(limiter.consume(key));
    expect(e.code).toBe("rate_limited");
    expect(e.status).toBe(429);
    expect(e.message).toMatch(/3 requests per minute/);
    expect(Number.isInteger(e.retryAfterSeconds)).toBe(true);
    expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(e.retryAfterSeconds).toBeLessThanOrEqual(60);

    // Another key has its own budget.
    await limiter.consume(record("bbbbbbbbbbbbbbbb", 3));
    expect(await redis.exists(`${prefix}:ratelimit:aaaaaaaaaaaaaaaa`)).toBe(1);
  });

  it("never limits a key without a rate", async () => {
    const limiter = new KeyRateLimiter(redis, prefix);
    const key = record("cccccccccccccccc", null);
    for (let i = 0; i < 50; i++) await limiter.consume(key);
    expect(await redis.exists(`${prefix}:ratelimit:cccccccccccccccc`)).toBe(0);
  });

  it("shares one budget between API processes", async () => {
    const first = new KeyRateLimiter(redis, prefix);
    const second = new KeyRateLimiter(other, prefix);
    const key = record("dddddddddddddddd", 4);
    await first.consume(key);
    await second.consume(key);
    await first.consume(key);
    await second.consume(key);
    expect((await rejection(first.consume(key))).code).toBe("rate_limited");
    expect((await rejection(second.consume(key))).code).toBe("rate_limited");
  });

  it("keeps what a key has used when its rate changes", async () => {
    const limiter = new KeyRateLimiter(redis, prefix);
    for (let i = 0; i < 2; i++) await limiter.consume(record("eeeeeeeeeeeeeeee", 2));
    await limiter.consume(record("eeeeeeeeeeeeeeee", 3));
    const e = await rejection(limiter.consume(record("eeeeeeeeeeeeeeee", 3)));
    expect(e.message).toMatch(/3 requests per minute/);
  });
});
