import { AppError } from "@hybrid/protocol";
import type { RedisClient } from "@hybrid/queue";
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { ApiKeyRecord } from "./keys.ts";

/**
 * Per-key request budgets, counted in Redis so every API instance draws from the same budget.
 * A budget is a fixed one-minute window that starts at the key's first request in it.
 */
export class KeyRateLimiter {
  private readonly redis: RedisClient;
  private readonly keyPrefix: string;
  private readonly limiters = new Map<number, RateLimiterRedis>();

  /**
   * @param redis - an ioredis client or cluster (the API's shared one will do).
   * @param prefix - the deployment's Redis prefix; counters live under `${prefix}:ratelimit:<key id>`,
   *   one key per API key that the limiter's script touches alone (so any cluster slot will do).
   */
  constructor(redis: RedisClient, prefix: string) {
    this.redis = redis;
    this.keyPrefix = `${prefix}:ratelimit`;
  }

  /**
   * Counts one request for `record`'s key.
   *
   * @throws AppError `rate_limited` (429) with `retryAfterSeconds` when the key's per-minute
   *   budget is spent. Redis failures are rethrown as they are (the error middleware answers 503).
   */
  async consume(record: ApiKeyRecord): Promise<void> {
    const points = record.rate_per_minute;
    if (points === null) return;
    try {
      await this.limiterFor(points).consume(record.id);
    } catch (e) {
      if (!(e instanceof RateLimiterRes)) throw e;
      throw new AppError(
        "rate_limited",
        `This API key is limited to ${points} request${points === 1 ? "" : "s"} per minute; try again later.`,
        { retryAfterSeconds: Math.max(1, Math.ceil(e.msBeforeNext / 1000)) },
      );
    }
  }

  private limiterFor(points: number): RateLimiterRedis {
    let limiter = this.limiters.get(points);
    if (!limiter) {
      limiter = new RateLimiterRedis({
        storeClient: this.redis,
        // ioredis, not node-redis: the limiter must call ioredis's command names.
        useRedisPackage: false,
        // Every rate shares one key per owner (the counter's TTL is set when it is created, and
        // points are only compared client-side), so changing a key's rate keeps what it has used.
        keyPrefix: this.keyPrefix,
        points,
        duration: 60,
      });
      this.limiters.set(points, limiter);
    }
    return limiter;
  }
}
