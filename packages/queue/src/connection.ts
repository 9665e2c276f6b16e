import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";

/**
 * A connection to the deployment's Redis: one server, or a Redis Cluster when `REDIS_URL` names
 * cluster nodes (see {@link parseRedisUrl}). Code that holds a connection takes this type; on a
 * cluster every multi-key command, MULTI/EXEC and script must stay within one hash slot (the key
 * names in `names.ts` carry the hash tags that make this so).
 */
export type RedisClient = Redis | Cluster;

/** One node of a cluster as `REDIS_URL` names it. */
export interface RedisNode {
  host: string;
  port: number;
}

/** Where Redis is, out of `REDIS_URL`. */
export type RedisTarget =
  | { kind: "single"; url: string }
  | {
      kind: "cluster";
      /** The nodes named; ioredis discovers the rest of the cluster from any of them. */
      nodes: RedisNode[];
      username: string | undefined;
      password: string | undefined;
      tls: boolean;
    };

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/?)(.*)$/i;
const NODE = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d+))?$/;

export const REDIS_URL_FORMS =
  "redis://[user:password@]host:port[/db] (rediss:// for TLS) for one Redis, or " +
  "redis+cluster://[user:password@]host1:port1,host2:port2,... (rediss+cluster:// for TLS) for a Redis Cluster";

/** Whether `REDIS_URL` names a Redis Cluster (`redis+cluster://` or `rediss+cluster://`). */
export const isClusterUrl = (url: string): boolean => /^rediss?\+cluster:/i.test(url);

/**
 * Parses `REDIS_URL`. One Redis: any URL, handed to ioredis as it is (as before clusters were
 * supported), e.g. `redis://user:pass@host:6379/2`. A Redis Cluster:
 * `redis+cluster://[user:password@]host1:port1,host2:port2,...` (`rediss+cluster://` for TLS)
 * naming one or more of its nodes (port 6379 when left out); a cluster has only database 0, so no
 * `/db` path.
 *
 * @throws Error saying what is wrong and which forms are accepted.
 */
export function parseRedisUrl(url: string): RedisTarget {
  const bad = (why: string) =>
    new Error(`REDIS_URL ${JSON.stringify(url)} ${why}; expected ${REDIS_URL_FORMS}.`);
  if (!isClusterUrl(url)) {
    try {
      new URL(url);
    } catch {
      throw bad("is not a URL");
    }
    return { kind: "single", url };
  }
  const m = CLUSTER_URL.exec(url);
  if (!m) throw bad("is not a cluster URL");
  const [, scheme = "", userinfo, hostList = "", , rest = ""] = m;
  if (rest !== "")
    throw bad("has a path or query: a cluster URL names nodes only (a cluster has only database 0)");
  const nodes = hostList.split(",").map((part) => {
    const n = NODE.exec(part.trim());
    const port = n?.[3] === undefined ? 6379 : Number(n[3]);
    if (!n || !Number.isInteger(port) || port < 1 || port > 65535)
      throw bad(`has a node ${JSON.stringify(part)} that is not host[:port]`);
    return { host: n[1] ?? n[2] ?? "", port };
  });
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo) {
    const colon = userinfo.indexOf(":");
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw bad("has credentials that are not URL-encoded");
      }
    };
    username = decode(colon < 0 ? userinfo : userinfo.slice(0, colon)) || undefined;
    password = colon < 0 ? undefined : decode(userinfo.slice(colon + 1)) || undefined;
  }
  return { kind: "cluster", nodes, username, password, tls: scheme.toLowerCase() === "rediss" };
}

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
