import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { RedisFaults } from "./redis-faults.ts";

function setup() {
  const out = new PassThrough();
  const lines: { level: number; msg: string; redis?: string; errorsSinceLastLine?: number }[] = [];
  let rest = "";
  out.on("data", (d: Buffer) => {
    const parts = (rest + d.toString()).split("\n");
    rest = parts.pop() ?? "";
    for (const p of parts) lines.push(JSON.parse(p));
  });
  let now = 1_000_000;
  const faults = new RedisFaults(pino(out), "redis://user:hunter2@127.0.0.1:1/0", { now: () => now });
  return { faults, lines, tick: (ms: number) => (now += ms) };
}

describe("RedisFaults", () => {
  it("says once what is wrong and what to do, then at most a line every ten seconds", async () => {
    const { faults, lines, tick } = setup();
    const clients = Array.from({ length: 12 }, () => faults.watch(new EventEmitter()));
    // 12 connections retrying every 100 ms for 25 s.
    for (let t = 0; t < 250; t++) {
      for (const c of clients) c.emit("error", new Error("connect ECONNREFUSED 127.0.0.1:1"));
      tick(100);
    }
    await expect.poll(() => lines.length).toBe(3);
    expect(lines[0]).toMatchObject({ level: 50 });
    expect(lines[0]!.msg).toMatch(/redis-server.*REDIS_URL/);
    expect(lines.slice(1).map((l) => l.msg)).toEqual([
      "redis still unreachable; retrying",
      "redis still unreachable; retrying",
    ]);
    expect(lines[1]!.errorsSinceLastLine).toBe(1200);
    expect(JSON.stringify(lines)).not.toContain("hunter2");
  });

  it("says when Redis is back, and speaks up again at the next outage", async () => {
    const { faults, lines, tick } = setup();
    const c = faults.watch(new EventEmitter());
    c.emit("ready");
    c.emit("error", new Error("connect ECONNREFUSED"));
    tick(3000);
    c.emit("ready");
    c.emit("ready");
    c.emit("error", new Error("read ECONNRESET"));
    await expect
      .poll(() => lines.map((l) => l.msg.split(":")[0]))
      .toEqual(["redis unreachable", "redis reachable again", "redis unreachable"]);
  });
});
