import { parseRedisUrl, type RedisTarget } from "@hybrid/service";
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";

/**
 * A connection to the deployment's Redis: one server, or a Redis Cluster when `REDIS_URL` names
 * cluster nodes (see {@link parseRedisUrl}). Code that holds a connection takes this type; on a
 * cluster every multi-key command, MULTI/EXEC and script must stay within one hash slot (the key
 * names in `names.ts` carry the hash tags that make this so).
 */
export type RedisClient = Redis | Cluster;

/**
 * Cluster options from node options: the credentials and TLS of the URL go to every node.
 * `enableOfflineQueue` stays on at the cluster level: ioredis parks commands there while it
 * discovers the slots (at start and after a failover), which BullMQ's first commands and ours
 * may come before; node connections always keep theirs (ioredis forces it).
 */
function clusterOptions(
  target: Extract<RedisTarget, { kind: "cluster" }>,
  node: RedisOptions,
): ClusterOptions {
  const { lazyConnect, enableOfflineQueue: _perNode, ...redisOptions } = node;
  return {
    lazyConnect,
    redisOptions: {
      ...redisOptions,
      ...(target.username ? { username: target.username } : {}),
      ...(target.password ? { password: target.password } : {}),
      ...(target.tls ? { tls: {} } : {}),
    },
  };
}

/**
 * A Redis connection for one role. BullMQ's blocking connections (workers, queue events) and
 * subscribers need `maxRetriesPerRequest: null`; command connections (payload store, producers)
 * fail fast instead (after two reconnection attempts) so an HTTP request never hangs on a dead
 * Redis. A cluster URL gives an ioredis `Cluster` with the same options on each node connection.
 */
export function createRedis(
  url: string,
  role: "blocking" | "command",
  extra: RedisOptions = {},
  /** Cluster-only options (e.g. `shardedSubscribers` for SSUBSCRIBE). */
  clusterExtra: Partial<ClusterOptions> = {},
): RedisClient {
  const options: RedisOptions = {
    maxRetriesPerRequest: role === "blocking" ? null : 2,
    connectTimeout: 5_000,
    lazyConnect: false,
    ...extra,
  };
  const target = parseRedisUrl(url);
  if (target.kind === "cluster")
    return new Cluster(target.nodes, { ...clusterOptions(target, options), ...clusterExtra });
  return new Redis(url, options);
}

/**
 * What BullMQ gets as `connection`. One Redis: options BullMQ opens its own connections with
 * (`extra` on top). A cluster: a new ioredis `Cluster` (BullMQ takes no cluster options, only an
 * instance). BullMQ duplicates it for its blocking reads and closes those, but never closes the
 * instance itself: whoever asked for it closes it (or exits).
 */
export function bullConnection(url: string, extra: RedisOptions = {}): RedisOptions | Cluster {
  const target = parseRedisUrl(url);
  if (target.kind === "cluster")
    return new Cluster(
      target.nodes,
      clusterOptions(target, { connectTimeout: 5_000, ...extra, maxRetriesPerRequest: null }),
    );
  const u = new URL(url);
  return {
    host: u.hostname || "127.0.0.1",
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === "rediss:" ? {} : undefined,
    maxRetriesPerRequest: null,
    ...extra,
  };
}
