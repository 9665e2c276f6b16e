// The MONITOR parsing and counting the hot-path test and `pnpm bench:commands` rely on, on
// lines as Redis 7 prints them, and against a live redis-server of its own.
import type { ChildProcess } from "node:child_process";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startRedisServer, stop } from "../../scripts/lib.ts";
import { countCommands, lessBackground, parseMonitorLine, RedisMonitor } from "./redis-monitor.ts";

describe("parseMonitorLine", () => {
  it("reads the time, db, source, name and arguments, unescaping quotes and bytes", () => {
    expect(parseMonitorLine('+1700000000.250000 [3 127.0.0.1:50123] "set" "a \\"b\\"" "\\x00\\n"')).toEqual({
      at: 1_700_000_000_250,
      db: 3,
      source: "127.0.0.1:50123",
      name: "SET",
      args: ['a "b"', "\0\n"],
    });
    expect(parseMonitorLine('1700000000.000001 [0 lua] "EXISTS" "k"')).toMatchObject({
      source: "lua",
      name: "EXISTS",
      args: ["k"],
    });
    expect(parseMonitorLine('1700000000.000001 [0 unix:/tmp/r.sock] "PING"')).toMatchObject({
      source: "unix:/tmp/r.sock",
      name: "PING",
      args: [],
    });
  });

  it("ignores what is not a command line", () => {
    expect(parseMonitorLine("+OK")).toBeUndefined();
    expect(parseMonitorLine("")).toBeUndefined();
  });
});

describe("countCommands and lessBackground", () => {
  const at = (name: string, source = "127.0.0.1:1") => ({ at: 0, db: 0, source, name, args: [] });

  it("counts a script once and none of the commands it runs", () => {
    const c = countCommands([at("EVALSHA"), at("EXISTS", "lua"), at("HSET", "lua"), at("GET")], 1000);
    expect(c.total).toBe(2);
    expect(Object.fromEntries(c.byName)).toEqual({ EVALSHA: 1, GET: 1 });
  });

  it("subtracts the idle window scaled to the window's length", () => {
    const idle = countCommands([at("BZPOPMIN"), at("BZPOPMIN")], 1000);
    const window = countCommands(
      [at("BZPOPMIN"), at("BZPOPMIN"), at("BZPOPMIN"), at("BZPOPMIN"), at("GET")],
      2000,
    );
    const net = lessBackground(window, idle);
    expect(net.total).toBe(1);
    expect(Object.fromEntries(net.byName)).toEqual({ BZPOPMIN: 0, GET: 1 });
  });
});

describe("RedisMonitor", () => {
  let redis: ChildProcess;
  let url: string;
  beforeAll(async () => {
    const port = await freePort();
    redis = await startRedisServer(port);
    url = `redis://127.0.0.1:${port}`;
  });
  afterAll(() => stop(redis, 2000));

  it("sees exactly the commands sent between two fences, a script as one", async () => {
    const monitor = await RedisMonitor.open(url);
    const client = new Redis(url);
    try {
      await client.ping();
      const from = await monitor.fence();
      await client.set("k", "v");
      await client.eval("redis.call('GET', KEYS[1]); return redis.call('EXISTS', KEYS[1])", 1, "k");
      const to = await monitor.fence();
      await client.get("k");
      const c = monitor.count(from, to);
      expect(Object.fromEntries(c.byName)).toEqual({ SET: 1, EVAL: 1 });
      expect(
        monitor
          .commands(from, to)
          .filter((x) => x.source === "lua")
          .map((x) => x.name),
      ).toEqual(["GET", "EXISTS"]);
      expect(c.ms).toBeGreaterThanOrEqual(0);
    } finally {
      client.disconnect();
      monitor.close();
    }
  });
});
