import { randomUUID } from "node:crypto";
import type { JobResult } from "@hybrid/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { CompletionListener, CompletionPublisher, completionsChannel } from "./completions.ts";
import { createRedis } from "./connection.ts";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `test-${randomUUID().slice(0, 8)}`;
const redis = createRedis(redisUrl, "command");
const listener = new CompletionListener(createRedis(redisUrl, "blocking"), prefix);
const publisher = new CompletionPublisher(redis, prefix);

afterAll(() => {
  listener.close();
  redis.disconnect();
});

const result = (n: number): JobResult => ({
  result: `${prefix}:payload:${n}`,
  contentType: "tensor/binary",
  bytes: n,
  shape: [1, n],
  dtype: "uint8",
  timings: { readMs: 0.5, runMs: 20, modelMs: 18, writeMs: 1 },
});

const settled = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p.then(() => "settled"), new Promise((r) => setTimeout(() => r("pending"), ms))]);

describe("completion notices", () => {
  it("hands each waiter the result announced for its job, and only that", async () => {
    await listener.subscribed();
    const a = listener.wait("job-a");
    const b = listener.wait("job-b");
    publisher.announce("job-b", result(2));
    expect(await b.result).toEqual(result(2));
    expect(await settled(a.result, 100)).toBe("pending");
    publisher.announce("job-a", result(1));
    expect(await a.result).toEqual(result(1));
  });

  it("ignores notices after stop, malformed notices and results that do not parse", async () => {
    await listener.subscribed();
    const stopped = listener.wait("job-c");
    stopped.stop();
    publisher.announce("job-c", result(3));
    expect(await settled(stopped.result, 100)).toBe("pending");

    const w = listener.wait("job-d");
    await redis.publish(completionsChannel(prefix), "not json");
    await redis.publish(completionsChannel(prefix), JSON.stringify({ id: "job-d", result: { bytes: -1 } }));
    // Another deployment's channel (another prefix) is not ours.
    await redis.publish(completionsChannel(`${prefix}x`), JSON.stringify({ id: "job-d", result: result(9) }));
    expect(await settled(w.result, 100)).toBe("pending");
    publisher.announce("job-d", result(4));
    expect(await w.result).toEqual(result(4));
  });
});
