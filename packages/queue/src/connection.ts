import { Redis, type RedisOptions } from "ioredis";

/**
 * A Redis connection for one role. BullMQ's blocking connections (workers, queue events) need
 * `maxRetriesPerRequest: null`; command connections (payload store, producers) fail fast instead
 * (after two reconnection attempts) so an HTTP request never hangs on a dead Redis.
 */
export function createRedis(url: string, role: "blocking" | "command", extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: role === "blocking" ? null : 2,
    connectTimeout: 5_000,
    lazyConnect: false,
    ...extra,
  });
}

/** Connection options BullMQ can use to open its own connections. */
export function bullConnection(url: string) {
  const u = new URL(url);
  return {
    host: u.hostname || "127.0.0.1",
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === "rediss:" ? {} : undefined,
    maxRetriesPerRequest: null,
  };
}
