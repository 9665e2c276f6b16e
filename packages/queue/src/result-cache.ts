import { JobResult } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import { resultCacheIndexKey, resultCacheKey } from "./names.ts";

/** A cached answer: its bytes and the job result that describes them. */
export interface CachedAnswer {
  bytes: Buffer;
  result: JobResult;
}

const INDEX_ENTRY = "hybridIndexCachedResult";
// KEYS: the cache's entries by time put, their sizes, their total bytes (one slot). ARGV: the
// entry's key, its bytes, the entries' life in ms, the cache's budget in bytes. Entries past their
// life (expired on their own) leave the index; then the oldest go until the total fits the budget,
// and their keys are returned for the caller to delete (each entry is in a slot of its own).
const INDEX_ENTRY_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local function forget(member)
  total = total - tonumber(redis.call('HGET', KEYS[2], member) or '0')
  redis.call('HDEL', KEYS[2], member)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))) do
  forget(member)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
forget(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
total = total + tonumber(ARGV[2])
local evicted = {}
while total > tonumber(ARGV[4]) do
  local oldest = redis.call('ZPOPMIN', KEYS[1])
  if #oldest == 0 then break end
  forget(oldest[1])
  evicted[#evicted + 1] = oldest[1]
end
if total < 0 then total = 0 end
redis.call('SET', KEYS[3], total, 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return evicted
`;

/**
 * Answers of deterministic requests (a generation with a seed), by owner and a hash of the
 * request, for `x-use-cache` (the HF Inference API's cache): the same request is answered again
 * without a GPU. Each owner (API key) has entries of its own: a hit never reveals, or serves,
 * another key's request. Entries live `ttlSeconds`, and all of them together take at most
 * `maxBytes` (their answers' bytes): the oldest are evicted first. The bytes are the job's answer
 * as the worker made it: the API renders them like any other answer.
 */
export class ResultCache {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    /** The budget of all entries' answer bytes together. */
    private readonly maxBytes: number,
  ) {
    if (!(INDEX_ENTRY in redis)) redis.defineCommand(INDEX_ENTRY, { numberOfKeys: 3, lua: INDEX_ENTRY_LUA });
  }

  async get(owner: string, hash: string): Promise<CachedAnswer | null> {
    const [meta, bytes] = await this.redis.hmgetBuffer(
      resultCacheKey(this.prefix, owner, hash),
      "result",
      "bytes",
    );
    if (!meta || !bytes) return null;
    let result: JobResult;
    try {
      result = JobResult.parse(JSON.parse(meta.toString("utf8")));
    } catch {
      return null;
    }
    return { bytes, result };
  }

  async put(owner: string, hash: string, result: JobResult, bytes: Buffer): Promise<void> {
    // An answer larger than the whole budget would only evict everything else, itself included.
    if (bytes.length > this.maxBytes) return;
    const key = resultCacheKey(this.prefix, owner, hash);
    // Timings describe one run, not the answer: a hit did not run.
    const { timings: _timings, inline: _inline, ...kept } = result;
    await this.redis
      .multi()
      .hset(key, "result", JSON.stringify(kept), "bytes", bytes)
      .expire(key, this.ttlSeconds)
      .exec();
    const evicted = (await (
      this.redis as unknown as Record<string, (...a: (string | number)[]) => Promise<string[]>>
    )[INDEX_ENTRY]!(
      resultCacheIndexKey(this.prefix, "entries"),
      resultCacheIndexKey(this.prefix, "sizes"),
      resultCacheIndexKey(this.prefix, "bytes"),
      key,
      bytes.length,
      this.ttlSeconds * 1000,
      this.maxBytes,
    )) as string[];
    // One DEL per entry: on a cluster each may be in a slot of its own (sent together: one round trip).
    await Promise.all(evicted.map((k) => this.redis.del(k)));
  }
}
