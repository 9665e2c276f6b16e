import { randomUUID } from "node:crypto";
import type { JobResult } from "@hybrid/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { CompletionListener, CompletionPublisher } from "./completions.ts";
import { createRedis } from "./connection.ts";
import { replyChannel } from "./names.ts";
import { PayloadStore } from "./payload-store.ts";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `test-${randomUUID().slice(0, 8)}`;
const redis = createRedis(redisUrl, "command");
const store = new PayloadStore(redis, prefix, 60);
const listener = new CompletionListener(createRedis(redisUrl, "blocking"), prefix, store);
// Answers over 1 KB are stored and announced, not sent inline.
const publisher = new CompletionPublisher(redis, prefix, store, 1024);

afterAll(async () => {
  listener.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const resultOf = (bytes: number): JobResult => ({
  result: store.newKey(),
  contentType: "tensor/binary",
  bytes,
  shape: [1, bytes],
  dtype: "uint8",
  timings: { readMs: 0.5, runMs: 20, modelMs: 18, writeMs: 0 },
});
/** This listener's reply address. */
const to = (keep: boolean) => ({ api: listener.id, keep });
const bytesOf = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * seed) & 0xff);
const settled = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p.then(() => "settled"), new Promise((r) => setTimeout(() => r("pending"), ms))]);

describe("replies from workers to the API that waits", () => {
  it("sends a small answer inline to its waiter only, without storing it", async () => {
    await listener.subscribed();
    const a = listener.wait("job-a");
    const b = listener.wait("job-b");
    const r = resultOf(600);
    const bytes = bytesOf(600, 7);
    const kept = await publisher.deliver("job-b", to(false), r, bytes);
    expect(kept).toEqual({ ...r, inline: true });
    const got = await b.reply;
    expect(got.result).toEqual(r);
    expect(got.bytes?.equals(Buffer.from(bytes))).toBe(true);
    expect(await settled(a.reply, 100)).toBe("pending");
    expect(await store.get(r.result)).toBeNull();
  });

  it("stores an answer that must stay fetchable before replying, and still sends its bytes", async () => {
    await listener.subscribed();
    const keep = listener.wait("job-k");
    const r = resultOf(300);
    const kept = await publisher.deliver("job-k", to(true), r, bytesOf(300, 3));
    expect(kept.inline).toBeUndefined();
    // Stored by the worker before the reply went out.
    expect((await store.get(r.result))?.equals(Buffer.from(bytesOf(300, 3)))).toBe(true);
    expect((await keep.reply).bytes?.equals(Buffer.from(bytesOf(300, 3)))).toBe(true);
  });

  it("stores inline bytes that nobody waits for any more (a request answered 504)", async () => {
    await listener.subscribed();
    const gone = listener.wait("job-g");
    gone.stop();
    const r = resultOf(200);
    const kept = await publisher.deliver("job-g", to(false), r, bytesOf(200, 5));
    expect(kept.inline).toBe(true);
    await expect.poll(() => store.get(r.result)).not.toBeNull();
    expect((await store.get(r.result))?.equals(Buffer.from(bytesOf(200, 5)))).toBe(true);
    expect(await settled(gone.reply, 50)).toBe("pending");
  });

  it("stores a large answer and announces it without its bytes", async () => {
    await listener.subscribed();
    const w = listener.wait("job-big");
    const r = resultOf(5000);
    const kept = await publisher.deliver("job-big", to(false), r, bytesOf(5000, 11));
    expect(kept.inline).toBeUndefined();
    const got = await w.reply;
    expect(got.bytes).toBeUndefined();
    expect(got.result).toEqual(r);
    expect((await store.get(r.result))?.equals(Buffer.from(bytesOf(5000, 11)))).toBe(true);
  });

  it("stores the answer when no API listens on the reply address (it is gone)", async () => {
    const r = resultOf(100);
    const kept = await publisher.deliver("job-x", { api: "no-such-api", keep: false }, r, bytesOf(100, 13));
    expect(kept.inline).toBeUndefined();
    expect((await store.get(r.result))?.length).toBe(100);
  });

  it("ignores malformed replies and other deployments' channels", async () => {
    await listener.subscribed();
    const w = listener.wait("job-m");
    await redis.publish(replyChannel(prefix, listener.id), "no newline");
    await redis.publish(
      replyChannel(prefix, listener.id),
      `${JSON.stringify({ id: "job-m", result: { bytes: -1 } })}\n`,
    );
    await redis.publish(
      replyChannel(`${prefix}x`, listener.id),
      `${JSON.stringify({ id: "job-m", result: resultOf(1), stored: false })}\nx`,
    );
    expect(await settled(w.reply, 100)).toBe("pending");
    const r = resultOf(4);
    await publisher.deliver("job-m", to(false), r, bytesOf(4, 1));
    expect((await w.reply).result).toEqual(r);
  });

  it("hands one reply to every waiter of the job (an idempotent retry beside the first request)", async () => {
    await listener.subscribed();
    const first = listener.wait("job-i");
    const retry = listener.wait("job-i");
    const r = resultOf(64);
    await publisher.deliver("job-i", to(true), r, bytesOf(64, 9));
    expect((await first.reply).bytes?.length).toBe(64);
    expect((await retry.reply).bytes?.length).toBe(64);
    expect(await store.get(r.result)).not.toBeNull();
  });
});
