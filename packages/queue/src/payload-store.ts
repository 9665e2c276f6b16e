import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { payloadKey } from "./names.ts";

/**
 * Payload bytes (latents, images, results) in Redis under keys with a TTL. Job data only carries
 * the key: BullMQ stores job data as JSON, where a Buffer would balloon about 5×.
 */
export class PayloadStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    /** Seconds a payload lives if nobody deletes it. */
    private readonly ttlSeconds: number,
  ) {}

  /** Stores the bytes under a new key and returns the key. */
  async put(bytes: Uint8Array, ttlSeconds = this.ttlSeconds): Promise<string> {
    const key = payloadKey(this.prefix, randomUUID());
    const buf = Buffer.isBuffer(bytes)
      ? bytes
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    await this.redis.set(key, buf, "EX", Math.max(1, Math.ceil(ttlSeconds)));
    return key;
  }

  /** Only keys this store made are read or deleted: a job cannot point it at other keys. */
  private ours(key: string): boolean {
    return key.startsWith(payloadKey(this.prefix, ""));
  }

  /** The bytes, or null when the key expired or never existed. */
  async get(key: string): Promise<Buffer | null> {
    if (!this.ours(key)) return null;
    return this.redis.getBuffer(key);
  }

  async delete(...keys: string[]): Promise<void> {
    const ours = keys.filter((k) => this.ours(k));
    if (ours.length > 0) await this.redis.del(...ours);
  }
}
