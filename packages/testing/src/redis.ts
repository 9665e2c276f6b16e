import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";

/**
 * The Redis the tests share: `REDIS_URL`, else the machine's own. A test fixture may read the
 * environment (the packages it tests never do): CI and developers point every test at one Redis.
 */
export const TEST_REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/**
 * A key prefix no other test uses: `test-<name>-<12 hex digits>`. The name says whose keys a
 * leftover belongs to; anything but letters, digits and `-` in it becomes `-`, so the prefix is
 * also a literal `SCAN MATCH` pattern.
 */
export function uniquePrefix(name: string): string {
  const slug =
    name
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 40) || "test";
  return `test-${slug}-${randomBytes(6).toString("hex")}`;
}

/** A connection to the shared Redis and a key prefix of one test (or one test file). */
export interface TestRedis {
  /** The Redis URL, for code under test that opens its own connections. */
  readonly url: string;
  /** The prefix every key of this test starts with (`QUEUE_PREFIX`, BullMQ's `prefix`). */
  readonly prefix: string;
  /** A command connection (fails a command after one retry rather than hanging a test). */
  readonly redis: Redis;
  /** `<prefix>:<parts joined by ":">`. */
  key(...parts: string[]): string;
  /** Every key under the prefix now. */
  keys(): Promise<string[]>;
  /** Deletes every key under the prefix; resolves to how many there were. */
  cleanup(): Promise<number>;
  /** Deletes every key under the prefix, then closes the connection. */
  close(): Promise<void>;
}

/**
 * Connects to {@link TEST_REDIS_URL} (or `url`) under a fresh {@link uniquePrefix}. One Redis
 * only: the tests that need a cluster start one themselves (test/e2e).
 */
export function openTestRedis(name: string, url: string = TEST_REDIS_URL): TestRedis {
  const prefix = uniquePrefix(name);
  const redis = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 5_000 });
  const keys = async () => {
    const found: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== "0");
    return found;
  };
  const cleanup = async () => {
    const found = await keys();
    // UNLINK in slices: one command with a million arguments would stall the shared Redis.
    for (let i = 0; i < found.length; i += 500) await redis.unlink(...found.slice(i, i + 500));
    return found.length;
  };
  return {
    url,
    prefix,
    redis,
    key: (...parts) => [prefix, ...parts].join(":"),
    keys,
    cleanup,
    close: async () => {
      try {
        await cleanup();
      } finally {
        await redis.quit().catch(() => redis.disconnect());
      }
    },
  };
}
