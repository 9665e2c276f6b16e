import { JobResult } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import { resultCacheKey } from "./names.ts";

/** A cached answer: its bytes and the job result that describes them. */
export interface CachedAnswer {
  bytes: Buffer;
  result: JobResult;
}

/**
 * Answers of deterministic requests (a generation with a seed), by a hash of the request, for
 * `x-use-cache` (the HF Inference API's cache): the same request is answered again without a GPU.
 * Entries live `ttlSeconds`; Redis' memory policy bounds the rest. The bytes are the job's
 * answer as the worker made it: the API renders them like any other answer.
 */
export class ResultCache {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  async get(hash: string): Promise<CachedAnswer | null> {
    const [meta, bytes] = await this.redis.hmgetBuffer(resultCacheKey(this.prefix, hash), "result", "bytes");
    if (!meta || !bytes) return null;
    let result: JobResult;
    try {
      result = JobResult.parse(JSON.parse(meta.toString("utf8")));
    } catch {
      return null;
    }
    return { bytes, result };
  }

  async put(hash: string, result: JobResult, bytes: Buffer): Promise<void> {
    const key = resultCacheKey(this.prefix, hash);
    // Timings describe one run, not the answer: a hit did not run.
    const { timings: _timings, inline: _inline, ...kept } = result;
    await this.redis
      .multi()
      .hset(key, "result", JSON.stringify(kept), "bytes", bytes)
      .expire(key, this.ttlSeconds)
      .exec();
  }
}
