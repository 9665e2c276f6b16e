import type { JobResult } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import { resultCacheKey } from "./names.ts";

/** A cached answer: its bytes and the headers that describe them. */
export interface CachedAnswer {
  bytes: Buffer;
  contentType: string;
  headers: Record<string, string>;
}

/**
 * Answers of deterministic requests (a generation with a seed), by a hash of the request, for
 * `x-use-cache` (the HF Inference API's cache): the same request is answered again without a GPU.
 * Entries live `ttlSeconds`; Redis' memory policy bounds the rest.
 */
export class ResultCache {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  async get(hash: string): Promise<CachedAnswer | null> {
    const [meta, bytes] = await this.redis.hmgetBuffer(resultCacheKey(this.prefix, hash), "meta", "bytes");
    if (!meta || !bytes) return null;
    const m = JSON.parse(meta.toString("utf8")) as { contentType: string; headers: Record<string, string> };
    return { bytes, contentType: m.contentType, headers: m.headers };
  }

  async put(hash: string, result: JobResult, bytes: Buffer): Promise<void> {
    const key = resultCacheKey(this.prefix, hash);
    const meta = JSON.stringify({ contentType: result.contentType, headers: result.headers ?? {} });
    await this.redis.multi().hset(key, "meta", meta, "bytes", bytes).expire(key, this.ttlSeconds).exec();
  }
}
