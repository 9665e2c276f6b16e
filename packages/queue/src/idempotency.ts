import { createHash } from "node:crypto";
import type { RedisClient } from "./connection.ts";
import { idempotencyKey } from "./names.ts";

/** What claimed an idempotency key: the job it made and the request's fingerprint. */
export interface IdempotencyClaim {
  jobId: string;
  fingerprint: string;
}

/**
 * `Idempotency-Key`s: per owner, each names the one job its first request made, for `ttlSeconds`.
 * Keys are stored hashed (they are the client's strings, of any visible characters).
 */
export class Idempotency {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private key(owner: string, key: string): string {
    return idempotencyKey(this.prefix, owner, createHash("sha256").update(key).digest("hex"));
  }

  /**
   * Claims a key for a new job: null when the claim is ours, or what claimed it before (within
   * `ttlSeconds`).
   */
  async claim(
    owner: string,
    key: string,
    claim: IdempotencyClaim,
    ttlSeconds: number,
  ): Promise<IdempotencyClaim | null> {
    const k = this.key(owner, key);
    const set = await this.redis.set(k, JSON.stringify(claim), "EX", ttlSeconds, "NX");
    if (set === "OK") return null;
    const prior = await this.redis.get(k);
    if (!prior) return null;
    return JSON.parse(prior) as IdempotencyClaim;
  }

  /** Frees a key whose job could not be created. */
  async release(owner: string, key: string): Promise<void> {
    await this.redis.del(this.key(owner, key));
  }
}
