import { describe, expect, it } from "vitest";
import { z } from "zod";
import { isClusterUrl, maskRedisUrls, parseRedisUrl } from "./redis-url.ts";
import { SharedEnv } from "./shared-env.ts";

const RedisUrl = z.object({ REDIS_URL: SharedEnv.REDIS_URL });

describe("REDIS_URL", () => {
  it("takes one Redis as any URL, as it always did", () => {
    for (const url of [
      "redis://127.0.0.1:6379",
      "rediss://u:p%40ss@host:6380/2",
      "redis://h",
      "redis://:pw@h:1",
    ])
      expect(parseRedisUrl(url)).toEqual({ kind: "single", url });
    expect(RedisUrl.parse({}).REDIS_URL).toBe("redis://127.0.0.1:6379");
  });

  it("takes a cluster as redis+cluster://[user:pass@]host:port,...", () => {
    expect(parseRedisUrl("redis+cluster://10.0.0.1:7000,10.0.0.2:7001")).toEqual({
      kind: "cluster",
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "10.0.0.2", port: 7001 },
      ],
      username: undefined,
      password: undefined,
      tls: false,
    });
    expect(parseRedisUrl("rediss+cluster://app:s%3Acret@redis-0.redis,[::1]:7002/")).toEqual({
      kind: "cluster",
      nodes: [
        { host: "redis-0.redis", port: 6379 },
        { host: "::1", port: 7002 },
      ],
      username: "app",
      password: "s:cret",
      tls: true,
    });
    expect(parseRedisUrl("redis+cluster://:only-a-password@h:1")).toMatchObject({
      username: undefined,
      password: "only-a-password",
    });
    expect(isClusterUrl("REDIS+CLUSTER://h:1")).toBe(true);
    expect(isClusterUrl("redis://h:1")).toBe(false);
  });

  it("refuses bad values with a message naming both forms", () => {
    const bad = [
      "not a url",
      "127.0.0.1:6379:x",
      "redis+cluster://",
      "redis+cluster://h:1,",
      "redis+cluster://h:0",
      "redis+cluster://h:65536",
      "redis+cluster://h:port",
      "redis+cluster://h:1/2",
      "redis+cluster://h:1?db=2",
      "redis+cluster://h:1,:2",
      "redis+cluster://u:%zz@h:1",
    ];
    for (const url of bad) {
      expect(() => parseRedisUrl(url), url).toThrow(/REDIS_URL .* expected redis:\/\/.*redis\+cluster:\/\//);
      const parsed = RedisUrl.safeParse({ REDIS_URL: url });
      expect(parsed.success, url).toBe(false);
      expect(parsed.error?.issues[0]?.message).toMatch(/redis\+cluster:\/\//);
    }
  });

  it("never puts the password of a bad URL in its error", () => {
    for (const url of ["redis+cluster://u:hunter2@h:1/2", "redis+cluster://:hunter2@h:0"]) {
      expect(() => parseRedisUrl(url)).toThrow(/REDIS_URL/);
      const parsed = RedisUrl.safeParse({ REDIS_URL: url });
      expect(parsed.error?.issues[0]?.message).not.toContain("hunter2");
      expect(parsed.error?.issues[0]?.message).toContain(":***@h");
    }
  });
});

describe("maskRedisUrls", () => {
  it("masks the password of every Redis URL in a text, keeping the rest", () => {
    expect(maskRedisUrls("redis://u:p%40ss@host:6379/2")).toBe("redis://u:***@host:6379/2");
    expect(maskRedisUrls("connect to rediss://:s3cret@h:1 failed")).toBe(
      "connect to rediss://:***@h:1 failed",
    );
    expect(maskRedisUrls('{"url":"redis+cluster://u:p@ss@a:1,b:2","x":"redis://tok@h"}')).toBe(
      '{"url":"redis+cluster://u:***@a:1,b:2","x":"redis://***@h"}',
    );
    expect(maskRedisUrls("REDIS://admin:pw@h")).toBe("REDIS://admin:***@h");
    for (const plain of ["redis://127.0.0.1:6379", "no url here", "user@example.com"])
      expect(maskRedisUrls(plain)).toBe(plain);
  });
});
