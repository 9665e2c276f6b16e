import { randomUUID } from "node:crypto";
import { AppError, type DecodeJob, serializeJobError } from "@hybrid/protocol";
import { sdV1Model } from "@hybrid/testing";
import { useTestRedis } from "@hybrid/testing/vitest";
import { UnrecoverableError } from "bullmq";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { jobCatalog } from "./catalog.ts";
import { createRedis } from "./connection.ts";
import { payloadKey, workerKey, workersKey } from "./names.ts";
import { PayloadStore } from "./payload-store.ts";
import { JobProducer } from "./producer.ts";
import { Queues } from "./queues.ts";
import { ReplyListener, ReplySender } from "./reply-channel.ts";
import { WorkerDirectory } from "./worker-directory.ts";
import { type JobHandler, openJobWorker } from "./workers.ts";

// A key prefix of this file's own on the shared Redis; its keys are deleted after the file.
const { url: redisUrl, prefix, redis } = useTestRedis("queue");

describe("PayloadStore", () => {
  it("stores bytes with a TTL and reads them back exactly", async () => {
    const store = new PayloadStore(redis, prefix, 60);
    const bytes = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 31) & 0xff);
    const key = await store.put(bytes);
    expect(key.startsWith(payloadKey(prefix, ""))).toBe(true);
    const back = await store.get(key);
    expect(back?.equals(Buffer.from(bytes))).toBe(true);
    const ttl = await redis.ttl(key);
    expect(ttl).toBeGreaterThan(50);
    expect(ttl).toBeLessThanOrEqual(60);
    await store.delete(key);
    expect(await store.get(key)).toBeNull();
  });

  it("refuses keys outside its prefix", async () => {
    await redis.set("not-a-payload", "secret");
    const store = new PayloadStore(redis, prefix, 60);
    expect(await store.get("not-a-payload")).toBeNull();
    await redis.del("not-a-payload");
  });
});

describe("WorkerDirectory", () => {
  it("lists announced workers and forgets withdrawn ones", async () => {
    const dir = new WorkerDirectory(redis, prefix, 5, 0);
    const model = sdV1Model({ id: "m1", operations: ["decode"] });
    await dir.announce({
      workerId: "w1",
      hostname: "h",
      pid: 1,
      startedAt: new Date().toISOString(),
      models: [model],
    });
    expect((await dir.models()).get("m1")).toEqual(model);
    expect(await redis.ttl(workerKey(prefix, "w1"))).toBeGreaterThan(0);
    await dir.withdraw("w1");
    expect((await dir.models()).size).toBe(0);
  });

  it("drops a worker whose heartbeat expired, without trusting any clock", async () => {
    const dir = new WorkerDirectory(redis, prefix, 1, 0);
    await dir.announce({
      workerId: "w2",
      hostname: "h",
      pid: 2,
      startedAt: new Date().toISOString(),
      models: [],
    });
    expect((await dir.list()).map((w) => w.workerId)).toEqual(["w2"]);
    // Its key expires in Redis after a second: wait for that, then the list prunes it.
    await expect.poll(() => redis.exists(workerKey(prefix, "w2")), { timeout: 5000 }).toBe(0);
    expect(await dir.list()).toEqual([]);
    expect(await redis.smembers(workersKey(prefix))).toEqual([]);
  });
});

const settings = { attempts: 3, retentionSeconds: 60, webhookAttempts: 3, webhookBackoffMs: 100 };
let queues: Queues;
const store = new PayloadStore(redis, prefix, 60);
const replies = new ReplyListener(createRedis(redisUrl, "blocking"), prefix, store);
afterAll(() => replies.close());

describe("JobProducer", () => {
  beforeEach(() => {
    queues = new Queues(redisUrl, prefix);
  });

  const job = (model: string): DecodeJob => ({
    kind: "decode",
    model,
    input: payloadKey(prefix, "x"),
    shape: [1, 4, 8, 8],
    dtype: "float32",
    scaling: null,
    packed: null,
    output: { kind: "uint8" },
  });

  /** A BullMQ worker on `model`'s decode queue running `fn`, as the worker app opens them. */
  const workerOf = (model: string, fn: JobHandler<"decode">) =>
    openJobWorker({ redisUrl, prefix }, "decode", model, fn, { concurrency: 1 });

  it("round-trips a job through a real BullMQ worker, answered on the reply channel", async () => {
    const producer = new JobProducer(queues, settings, replies);
    const sender = new ReplySender(redis, prefix, store);
    const worker = workerOf("echo", async (data, j) =>
      sender.deliver(
        j.id!,
        data.reply,
        { result: store.newKey(), contentType: "tensor/binary", bytes: 3 },
        new Uint8Array([7, 8, 9]),
      ),
    );
    try {
      await replies.subscribed();
      const id = randomUUID();
      const pending = producer.expect(id);
      await producer.enqueue({ ...job("echo"), reply: { api: producer.replyTo, keep: false } }, id);
      const { result, bytes } = await producer.answer(
        pending,
        id,
        jobCatalog.queue("decode", "echo"),
        10_000,
      );
      expect([...(bytes ?? [])]).toEqual([7, 8, 9]);
      expect(result).toMatchObject({ contentType: "tensor/binary", bytes: 3 });
      // The bytes went only in the reply: nothing stored.
      expect(await store.has(result.result)).toBe(false);
    } finally {
      await worker.close();
      await queues.close();
    }
  });

  it("reads the outcome from BullMQ when no reply comes: a result, or the worker's AppError without retrying bad input", async () => {
    const producer = new JobProducer(queues, settings, replies);
    let calls = 0;
    // No reply address in these jobs: only BullMQ's record tells their end.
    const ok = workerOf("plain", async (data) => ({
      result: data.input,
      contentType: "tensor/binary",
      bytes: 3,
    }));
    const bad = workerOf("bad", async () => {
      calls++;
      throw new UnrecoverableError(serializeJobError(new AppError("invalid_image", "not an image")));
    });
    try {
      const a = randomUUID();
      const pa = producer.expect(a);
      await producer.enqueue(job("plain"), a);
      const { result, bytes } = await producer.answer(
        pa,
        a,
        jobCatalog.queue("decode", "plain"),
        20_000,
        true,
      );
      expect(bytes).toBeUndefined();
      expect(result).toEqual({ result: payloadKey(prefix, "x"), contentType: "tensor/binary", bytes: 3 });
      const b = randomUUID();
      const pb = producer.expect(b);
      await producer.enqueue(job("bad"), b);
      const err = await producer
        .answer(pb, b, jobCatalog.queue("decode", "bad"), 20_000, true)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("invalid_image");
      expect(calls).toBe(1);
    } finally {
      await Promise.all([ok.close(), bad.close()]);
      await queues.close();
    }
  });

  it("times out with 504 naming the job, which stays queued for a worker to come", async () => {
    const producer = new JobProducer(queues, settings, replies);
    try {
      const id = randomUUID();
      const pending = producer.expect(id);
      await producer.enqueue(job("idle"), id);
      const err = await producer
        .answer(pending, id, jobCatalog.queue("decode", "idle"), 300)
        .catch((e: unknown) => e);
      expect((err as AppError).code).toBe("timeout");
      expect((err as AppError).status).toBe(504);
      expect((err as AppError).details).toEqual({ job_id: id });
      expect(await producer.backlog(jobCatalog.queue("decode", "idle"))).toBe(1);
    } finally {
      await queues.close();
    }
  });

  it("admits exactly `limit` of parallel submissions to a queue's backlog, added or not yet", async () => {
    const producer = new JobProducer(queues, settings, replies);
    const queue = jobCatalog.queue("decode", "admit");
    try {
      const ids = Array.from({ length: 50 }, () => randomUUID());
      const answers = await Promise.all(ids.map((id) => producer.admit(queue, id, 5)));
      const admitted = ids.filter((_, i) => answers[i]!.admitted);
      expect(admitted).toHaveLength(5);
      expect(await producer.backlog(queue)).toBe(5);
      // Added jobs take their reservations' places: still five, and still full.
      for (const id of admitted.slice(0, 3)) await producer.enqueue(job("admit"), id);
      expect(await producer.backlog(queue)).toBe(5);
      expect((await producer.admit(queue, randomUUID(), 5)).admitted).toBe(false);
      // A reservation given back (its job will not be added) frees its place for one more.
      await producer.release(queue, admitted[3]!);
      expect(await producer.backlog(queue)).toBe(4);
      const answersAfter = await Promise.all(
        Array.from({ length: 10 }, () => producer.admit(queue, randomUUID(), 5)),
      );
      expect(answersAfter.filter((a) => a.admitted)).toHaveLength(1);
      expect(await queues.queue(queue).getWaitingCount()).toBe(3);
    } finally {
      await queues.close();
    }
  });

  it("estimates the time to drain a queue from the jobs its workers finished lately", async () => {
    const producer = new JobProducer(queues, settings, replies);
    const queue = jobCatalog.queue("decode", "drain");
    try {
      // Nothing finished yet: the fallback.
      expect(await producer.secondsToDrain(queue, 100, 17)).toBe(17);
      const worker = workerOf("drain", async (data) => ({ result: data.input, contentType: "x", bytes: 0 }));
      const ids = Array.from({ length: 20 }, () => randomUUID());
      for (const id of ids) await producer.enqueue(job("drain"), id);
      await expect.poll(() => queues.queue(queue).getCompletedCount(), { timeout: 20_000 }).toBe(20);
      await worker.close();
      // 20 jobs within a minute: at least 20/60 per second, so 100 more take at most 300 s.
      const s = await producer.secondsToDrain(queue, 100, 17);
      expect(s).toBeGreaterThanOrEqual(1);
      expect(s).toBeLessThanOrEqual(300);
    } finally {
      await queues.close();
    }
  });
});
