import { Cluster } from "ioredis";
import { describe, expect, it } from "vitest";
import { bullConnection, createRedis } from "./connection.ts";

describe("Redis connections out of REDIS_URL", () => {
  it("gives BullMQ connection options for one Redis, unchanged", () => {
    expect(bullConnection("rediss://u:p%40ss@host:6380/2")).toEqual({
      host: "host",
      port: 6380,
      username: "u",
      password: "p@ss",
      db: 2,
      tls: {},
      maxRetriesPerRequest: null,
    });
    expect(bullConnection("redis://h", { maxRetriesPerRequest: 1 })).toMatchObject({
      port: 6379,
      db: 0,
      maxRetriesPerRequest: 1,
    });
  });

  it("gives an ioredis Cluster for a cluster URL, blocking-safe for BullMQ", () => {
    const url = "redis+cluster://u:pw@127.0.0.1:1,127.0.0.1:2";
    const bull = bullConnection(url, { maxRetriesPerRequest: 1 });
    const command = createRedis(url, "command", { lazyConnect: true });
    try {
      expect(bull).toBeInstanceOf(Cluster);
      expect(command).toBeInstanceOf(Cluster);
      const opts = (bull as Cluster).options;
      // BullMQ refuses a blocking connection that gives up on requests.
      expect(opts.redisOptions).toMatchObject({ maxRetriesPerRequest: null, username: "u", password: "pw" });
      expect((command as Cluster).options.redisOptions).toMatchObject({ maxRetriesPerRequest: 2 });
    } finally {
      (bull as Cluster).disconnect();
      command.disconnect();
    }
  });
});
