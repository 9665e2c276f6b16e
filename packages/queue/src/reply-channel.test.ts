import { AppError, type JobResult, serializeJobError } from "@hybrid/protocol";
import { useTestRedis } from "@hybrid/testing/vitest";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { createRedis } from "./connection.ts";
import { replyChannel } from "./names.ts";
import { PayloadStore } from "./payload-store.ts";
import { type JobOutcome, ReplyListener, ReplySender } from "./reply-channel.ts";

// A key prefix of this file's own on the shared Redis; its keys are deleted after the file.
const { url: redisUrl, prefix, redis } = useTestRedis("reply-channel");
const store = new PayloadStore(redis, prefix, 60);
const listener = new ReplyListener(createRedis(redisUrl, "blocking"), prefix, store);
// Answers over 1 KB are "large": stored and announced, not sent inline.
const sender = new ReplySender(redis, prefix, store, 1024);

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  listener.close();
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
const never = async (): Promise<JobOutcome> => null;
const wait = (timeoutMs = 10_000) => ({ timeoutMs, check: never, firstCheckMs: 60_000 });
const settled = <T>(p: Promise<T>) => {
  let state = "pending";
  p.then(
    () => (state = "resolved"),
    () => (state = "rejected"),
  );
  return () => state;
};

// One test per row of the table in reply-channel.ts.
describe("the reply channel: who stores and who deletes", () => {
  it("row 1: not kept, small, waiting: the bytes go inline to the waiter only, stored by nobody", async () => {
    await listener.subscribed();
    const other = listener.expect("job-a");
    const mine = listener.expect("job-b");
    const r = resultOf(600);
    const kept = await sender.deliver("job-b", to(false), r, bytesOf(600, 7));
    expect(kept).toEqual({ ...r, inline: true });
    const got = await mine.answer(wait());
    expect(got.result).toEqual(r);
    expect(got.bytes?.equals(Buffer.from(bytesOf(600, 7)))).toBe(true);
    expect(await store.has(r.result)).toBe(false);
    const otherState = settled(other.answer(wait(200)));
    await expect.poll(otherState).toBe("rejected");
    expect(listener.pending).toBe(0);
  });

  it("row 2: not kept, small, the waiter gone (504'd): the API's listener stores the bytes", async () => {
    await listener.subscribed();
    listener.expect("job-g").stop();
    const r = resultOf(200);
    const kept = await sender.deliver("job-g", to(false), r, bytesOf(200, 5));
    expect(kept.inline).toBe(true);
    await expect.poll(() => store.has(r.result)).toBe(true);
    expect((await store.get(r.result))?.equals(Buffer.from(bytesOf(200, 5)))).toBe(true);
  });

  it("row 3: not kept, small, no API listening (it is gone): the worker stores the bytes", async () => {
    const r = resultOf(100);
    const kept = await sender.deliver("job-x", { api: "no-such-api", keep: false }, r, bytesOf(100, 13));
    expect(kept.inline).toBeUndefined();
    expect((await store.get(r.result))?.length).toBe(100);
  });

  it("rows 4 and 5: not kept, large: stored by the worker, announced without its bytes", async () => {
    await listener.subscribed();
    const w = listener.expect("job-big");
    const r = resultOf(5000);
    const kept = await sender.deliver("job-big", to(false), r, bytesOf(5000, 11));
    expect(kept.inline).toBeUndefined();
    const got = await w.answer(wait());
    expect(got.bytes).toBeUndefined();
    expect(got.result).toEqual(r);
    expect((await store.get(r.result))?.equals(Buffer.from(bytesOf(5000, 11)))).toBe(true);
    // Nobody waiting: stored all the same.
    const r2 = resultOf(5000);
    await sender.deliver("job-big-2", to(false), r2, bytesOf(5000, 3));
    expect(await store.has(r2.result)).toBe(true);
  });

  it("row 6: kept, small: stored by the worker before the reply, whose bytes still come along", async () => {
    await listener.subscribed();
    const first = listener.expect("job-k");
    const retry = listener.expect("job-k");
    const r = resultOf(300);
    const kept = await sender.deliver("job-k", to(true), r, bytesOf(300, 3));
    expect(kept.inline).toBeUndefined();
    expect((await store.get(r.result))?.equals(Buffer.from(bytesOf(300, 3)))).toBe(true);
    // Every waiter of the job gets it (an idempotent retry beside the first request).
    expect((await first.answer(wait())).bytes?.equals(Buffer.from(bytesOf(300, 3)))).toBe(true);
    expect((await retry.answer(wait())).bytes?.length).toBe(300);
  });

  it("row 7: kept, large: stored, announced without its bytes", async () => {
    await listener.subscribed();
    const w = listener.expect("job-kl");
    const r = resultOf(3000);
    await sender.deliver("job-kl", to(true), r, bytesOf(3000, 17));
    expect((await w.answer(wait())).bytes).toBeUndefined();
    expect(await store.has(r.result)).toBe(true);
  });

  it("row 8: a failure that ends the job reaches the waiter as the job's AppError", async () => {
    await listener.subscribed();
    const w = listener.expect("job-f");
    await sender.fail("job-f", to(false), serializeJobError(new AppError("invalid_image", "not an image")));
    const err = await w.answer(wait()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("invalid_image");
  });
});

describe("waiting for a reply", () => {
  it("takes a reply that came before the wait began", async () => {
    await listener.subscribed();
    const w = listener.expect("job-early");
    const r = resultOf(10);
    await sender.deliver("job-early", to(false), r, bytesOf(10, 1));
    await expect.poll(() => store.has(r.result)).toBe(false);
    expect((await w.answer(wait())).bytes?.length).toBe(10);
  });

  it("falls back to BullMQ's record when no reply comes, and fails a lost inline answer", async () => {
    await listener.subscribed();
    const r = resultOf(10);
    const found = await listener
      .expect("job-fb")
      .answer({ timeoutMs: 10_000, firstCheckMs: 0, check: async () => ({ ok: true, result: r }) });
    expect(found).toEqual({ result: r });
    const failed = await listener
      .expect("job-fb2")
      .answer({
        timeoutMs: 10_000,
        firstCheckMs: 0,
        check: async () => ({ ok: false, error: new AppError("internal", "boom") }),
      })
      .catch((e: AppError) => e.code);
    expect(failed).toBe("internal");
    // Completed with bytes only a reply carried, and the reply never came: 410, not a hang.
    const lost = await listener
      .expect("job-fb3")
      .answer({
        timeoutMs: 10_000,
        firstCheckMs: 0,
        check: async () => ({ ok: true, result: { ...r, inline: true } }),
      })
      .catch((e: AppError) => e.code);
    expect(lost).toBe("payload_expired");
    expect(listener.pending).toBe(0);
  });

  it("times out with 504 naming the job", async () => {
    const err = (await listener
      .expect("job-slow")
      .answer(wait(50))
      .catch((e: unknown) => e)) as AppError;
    expect([err.code, err.status, err.details]).toEqual(["timeout", 504, { job_id: "job-slow" }]);
  });

  it("leaves nothing behind once answered or stopped: no listener, no timer, no check", async () => {
    await listener.subscribed();
    const check = vi.fn(never);
    const answered = listener.expect("job-clean");
    const stopped = listener.expect("job-stop");
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const p = answered.answer({ timeoutMs: 30_000, firstCheckMs: 1000, check });
    const s = settled(stopped.answer({ timeoutMs: 30_000, firstCheckMs: 1000, check }));
    stopped.stop();
    await sender.deliver("job-clean", to(false), resultOf(8), bytesOf(8, 2));
    await p;
    expect(listener.pending).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(120_000);
    expect(check).not.toHaveBeenCalled();
    // A stopped wait never settles and never checks.
    expect(s()).toBe("pending");
  });

  it("ignores malformed replies and other deployments' channels", async () => {
    await listener.subscribed();
    const w = listener.expect("job-m");
    const state = settled(w.answer(wait()));
    const channel = replyChannel(prefix, listener.id);
    // Not JSON, not a result, the bare channel, and another deployment's API of the same id.
    await redis.publish(`${channel}:no json`, Buffer.from("x"));
    await redis.publish(
      `${channel}:${JSON.stringify({ id: "job-m", result: { bytes: -1 } })}`,
      Buffer.from("x"),
    );
    await redis.publish(channel, `${JSON.stringify({ id: "job-m", result: resultOf(1), stored: false })}\nx`);
    await redis.publish(
      `${replyChannel(`${prefix}x`, listener.id)}:${JSON.stringify({ id: "job-m", result: resultOf(1), stored: false })}`,
      Buffer.from("x"),
    );
    const r = resultOf(4);
    // Replies arrive in order on one connection: when this one is in, the bad ones were read.
    const marker = listener.expect("job-marker");
    await sender.deliver("job-marker", to(false), resultOf(1), bytesOf(1, 1));
    await marker.answer(wait());
    expect(state()).toBe("pending");
    await sender.deliver("job-m", to(false), r, bytesOf(4, 1));
    await expect.poll(state).toBe("resolved");
  });
});
