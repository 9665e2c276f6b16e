import { randomUUID } from "node:crypto";
import { AppError, type DecodeJob, serializeJobError } from "@hybrid/protocol";
import { UnrecoverableError, Worker } from "bullmq";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { jobCatalog } from "./catalog.ts";
import { bullConnection, createRedis } from "./connection.ts";
import { bullPrefix, payloadKey, workerKey, workersKey } from "./names.ts";
import { PayloadStore } from "./payload-store.ts";
import { JobProducer, RateMeter } from "./producer.ts";
import { Queues } from "./queues.ts";
import { WorkerDirectory } from "./worker-directory.ts";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
// Each run gets its own prefix, so tests never see each other's keys.
const prefix = `test-${randomUUID().slice(0, 8)}`;
const redis = createRedis(redisUrl, "command");

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

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
    const model = {
      id: "m1",
      family: "sd-v1" as const,
      task: "vae" as const,
      operations: ["decode" as const],
      latent_channels: 4,
      latent_rank: 4 as const,
      spatial_compression: 8,
      scaling_factor: 0.18215,
      shift_factor: null,
      dtype: "float32" as const,
    };
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
    await new Promise((r) => setTimeout(r, 1300));
    expect(await dir.list()).toEqual([]);
    expect(await redis.smembers(workersKey(prefix))).toEqual([]);
  });
});

const settings = { attempts: 3, retentionSeconds: 60, webhookAttempts: 3, webhookBackoffMs: 100 };
let queues: Queues;

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

  it("round-trips a job through a real BullMQ worker", async () => {
    const producer = new JobProducer(queues, settings);
    const worker = new Worker(
      jobCatalog.queue("decode", "echo"),
      async (j) => ({
        result: j.data.input,
        contentType: "tensor/binary",
        bytes: 3,
        shape: [3],
        dtype: "uint8",
      }),
      {
        connection: bullConnection(redisUrl),
        prefix: bullPrefix(prefix, jobCatalog.queue("decode", "echo")),
      },
    );
    try {
      const j = await producer.enqueue(job("echo"), randomUUID());
      const { result, bytes } = await producer.waitForResult(j, 10_000);
      // No reply address in the job: the result comes from BullMQ's event, the bytes are fetched.
      expect(bytes).toBeUndefined();
      expect(result).toEqual({
        result: payloadKey(prefix, "x"),
        contentType: "tensor/binary",
        bytes: 3,
        shape: [3],
        dtype: "uint8",
      });
    } finally {
      await worker.close();
      await queues.close();
    }
  });

  it("carries a worker's AppError code back, without retrying bad input", async () => {
    const producer = new JobProducer(queues, settings);
    let calls = 0;
    const worker = new Worker(
      jobCatalog.queue("decode", "bad"),
      async () => {
        calls++;
        throw new UnrecoverableError(serializeJobError(new AppError("invalid_image", "not an image")));
      },
      { connection: bullConnection(redisUrl), prefix: bullPrefix(prefix, jobCatalog.queue("decode", "bad")) },
    );
    try {
      const j = await producer.enqueue(job("bad"), randomUUID());
      const err = await producer.waitForResult(j, 10_000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("invalid_image");
      expect(calls).toBe(1);
    } finally {
      await worker.close();
      await queues.close();
    }
  });

  it("times out with 504 naming the job, which stays queued for a worker to come", async () => {
    const producer = new JobProducer(queues, settings);
    try {
      const j = await producer.enqueue(job("idle"), randomUUID());
      const err = await producer.waitForResult(j, 300).catch((e: unknown) => e);
      expect((err as AppError).code).toBe("timeout");
      expect((err as AppError).status).toBe(504);
      expect((err as AppError).details).toEqual({ job_id: j.id });
      expect(await producer.backlog(jobCatalog.queue("decode", "idle"))).toBe(1);
    } finally {
      await queues.close();
    }
  });

  it("estimates the time to drain a queue from the completions it saw", () => {
    const meter = new RateMeter(60_000);
    const t0 = Date.now();
    expect(meter.rate(t0)).toBe(0);
    for (let i = 0; i < 30; i++) meter.tick(t0 + i * 100);
    // 30 events over at least the second the meter has lived: 30/s at most, and more than 0.
    const r = meter.rate(t0 + 3000);
    expect(r).toBeGreaterThan(5);
    expect(r).toBeLessThanOrEqual(30);
    // Events older than the window no longer count.
    expect(meter.rate(t0 + 120_000)).toBe(0);
  });
});
