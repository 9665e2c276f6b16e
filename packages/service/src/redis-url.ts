// Pure parsing of `REDIS_URL` (no ioredis): the settings validate it when an app starts, and
// @hybrid/queue's connections open what it names.

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

/** The forms `REDIS_URL` takes, as error messages name them. */
export const REDIS_URL_FORMS =
  "redis://[user:password@]host:port[/db] (rediss:// for TLS) for one Redis, or " +
  "redis+cluster://[user:password@]host1:port1,host2:port2,... (rediss+cluster:// for TLS) for a Redis Cluster";

/**
 * `user:password@` of a `redis://`-style URL anywhere in a text (the password may hold `@`: the
 * last `@` before the host ends it). Stops at whitespace and quotes, so it works inside JSON too.
 */
const URL_CREDENTIALS = /\b(rediss?(?:\+cluster)?:\/\/)[^\s"'/]*@/gi;

/**
 * The text with the credentials of every Redis URL in it masked: `redis://user:***@host`. Used
 * on every log line (see createLogger) and on every error that names `REDIS_URL`.
 */
export function maskRedisUrls(text: string): string {
  if (!/rediss?(?:\+cluster)?:\/\//i.test(text)) return text;
  return text.replace(URL_CREDENTIALS, (whole, scheme: string) => {
    const userinfo = whole.slice(scheme.length, -1);
    const colon = userinfo.indexOf(":");
    return colon < 0 ? `${scheme}***@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
}

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
    new Error(`REDIS_URL ${JSON.stringify(maskRedisUrls(url))} ${why}; expected ${REDIS_URL_FORMS}.`);
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
