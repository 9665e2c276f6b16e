import { randomUUID } from "node:crypto";
import type { RedisClient } from "./connection.ts";
import { payloadKey } from "./names.ts";

/**
 * Payload bytes (latents, images, results) in Redis under keys with a TTL. Job data only carries
 * the key: BullMQ stores job data as JSON, where a Buffer would balloon about 5×.
 */
export class PayloadStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    /** Seconds a payload lives if nobody deletes it. */
    private readonly ttlSeconds: number,
  ) {}

  /** Stores the bytes under a new key and returns the key. */
  async put(bytes: Uint8Array, ttlSeconds = this.ttlSeconds): Promise<string> {
    const key = this.newKey();
    await this.putAt(key, bytes, ttlSeconds);
    return key;
  }

  /** A fresh key of this store, for bytes that may be stored later (or never: see {@link putAt}). */
  newKey(): string {
    return payloadKey(this.prefix, randomUUID());
  }

  /** Stores the bytes under a key from {@link newKey}. */
  async putAt(key: string, bytes: Uint8Array, ttlSeconds = this.ttlSeconds): Promise<void> {
    if (!this.ours(key)) throw new RangeError("Not a key of this payload store.");
    const buf = Buffer.isBuffer(bytes)
      ? bytes
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    await this.redis.set(key, buf, "EX", Math.max(1, Math.ceil(ttlSeconds)));
  }

  /** `key` when it is one of this store's (to read or delete it some other way), else null. */
  keyOf(key: unknown): string | null {
    return typeof key === "string" && this.ours(key) ? key : null;
  }

  /** Only keys this store made are read or deleted: a job cannot point it at other keys. */
  private ours(key: string): boolean {
    return key.startsWith(payloadKey(this.prefix, ""));
  }

  /** Whether the key holds bytes (without reading them). */
  async has(key: string): Promise<boolean> {
    return this.ours(key) && (await this.redis.exists(key)) === 1;
  }

  /** The bytes, or null when the key expired or never existed. */
  async get(key: string): Promise<Buffer | null> {
    if (!this.ours(key)) return null;
    return this.redis.getBuffer(key);
  }

  async delete(...keys: string[]): Promise<void> {
    // One DEL per key: payload keys spread over a cluster's slots, and a multi-key DEL may not
    // span slots. Sent together, they still cost one round trip.
    await Promise.all(keys.filter((k) => this.ours(k)).map((k) => this.redis.del(k)));
  }
}
