import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { DiffusionRuntime, SessionHost, VaeRuntime } from "@hybrid/inference";
import { generateDefaultModels } from "@hybrid/model-tools";
import {
  DEFAULT_GENERATE_LIMITS,
  DEFAULT_LIMITS,
  encodeFromFloat32,
  type JobData,
  type ModelInfo,
  resolveGenerate,
} from "@hybrid/protocol";
import {
  createRedis,
  type JobMeta,
  JobProducer,
  JobStore,
  jobCatalog,
  PayloadStore,
  Queues,
  ReplyListener,
} from "@hybrid/queue";
import { createLogger } from "@hybrid/service";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelRuns } from "./job-runner.ts";
import { WorkerMetrics } from "./metrics.ts";
import { type RunningWorker, startWorker, type WorkerDeps } from "./start-worker.ts";

// The worker app in this process, on the machine's Redis, with the generated tiny SD pipeline
// (its VAE serves decode and encode): jobs are put in by the queue package's own producer.
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `test-worker-${randomUUID().slice(0, 8)}`;
const modelsDir = fileURLToPath(new URL("../../../node_modules/.cache/hybrid-test-models", import.meta.url));
const settings = { attempts: 2, retentionSeconds: 60, webhookAttempts: 1, webhookBackoffMs: 100 };
const log = createLogger("worker-test", "warn");

const redis = createRedis(redisUrl, "command");
const store = new PayloadStore(redis, prefix, 60);
const queues = new Queues(redisUrl, prefix);
const jobs = new JobStore(redis, queues, store, { prefix, catalog: settings });
const replies = new ReplyListener(createRedis(redisUrl, "blocking"), prefix, store);
const producer = new JobProducer(queues, settings, replies);

let host: SessionHost;
let vae: VaeRuntime;
let diffusion: DiffusionRuntime;
let model: ModelInfo;
let deps: WorkerDeps;

beforeAll(async () => {
  await generateDefaultModels(modelsDir);
  const sessions = { threads: 1, providers: ["cpu" as const], intraOpThreads: 1 };
  host = new SessionHost(sessions);
  const sources = [{ id: "sd-tiny", dir: `${modelsDir}/sd-tiny` }];
  vae = await VaeRuntime.open(sources, { ...sessions, limits: DEFAULT_LIMITS }, host);
  diffusion = await DiffusionRuntime.open(sources, host);
  model = { ...vae.models[0]!, generation: diffusion.models.get("sd-tiny")! };
  deps = {
    redisUrl,
    prefix,
    workerId: `test-${randomUUID().slice(0, 6)}`,
    models: [model],
    runs: modelRuns({ vae, diffusion, maxImagePixels: DEFAULT_GENERATE_LIMITS.maxPixels }),
    log,
    metrics: new WorkerMetrics(),
    catalog: settings,
    payloadTtlSeconds: 60,
    capacity: { concurrency: 1, maxBatchSize: 1 },
    shutdownGraceMs: 30_000,
    heartbeatSeconds: 5,
    healthPort: 0,
  };
  await replies.subscribed();
}, 300_000);

afterAll(async () => {
  replies.close();
  await queues.close();
  await vae?.close();
  await host?.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

/** Job data as a route makes it, before the payload and reply address are added. */
type Request = JobData extends infer T ? (T extends JobData ? Omit<T, "input" | "reply"> : never) : never;

/** Records and enqueues a job as the API does; `wait` listens for its reply first. */
async function submit(data: Request, input: Uint8Array | null, wait = true) {
  const id = randomUUID();
  const pending = wait ? producer.expect(id) : undefined;
  const meta: JobMeta = {
    id,
    kind: data.kind,
    model: data.model,
    queue: producer.queueOf(data),
    owner: "tester",
    createdAt: Date.now(),
    webhook: null,
    canceledAt: null,
    logged: true,
    capped: false,
    imageAsJson: false,
  };
  await jobs.create(meta);
  const ref = input ? await store.put(input) : null;
  const reply = pending ? { reply: { api: producer.replyTo, keep: false } } : {};
  await producer.enqueue({ ...data, input: ref, ...reply } as JobData, id);
  return { meta, answer: () => producer.answer(pending!, id, meta.queue, 60_000) };
}

const generation = (steps: number, side: number) => ({
  kind: "generate" as const,
  model: "sd-tiny",
  params: resolveGenerate(
    "text-to-image",
    "a lighthouse",
    { num_inference_steps: steps, width: side, height: side, seed: 7 },
    model.generation!.defaults,
    { ...DEFAULT_GENERATE_LIMITS, maxSteps: 1000 },
    () => 1,
  ),
  response: "image" as const,
  format: "png" as const,
});

describe("the worker app", () => {
  let worker: RunningWorker;
  beforeAll(async () => {
    worker = await startWorker(deps);
  });
  afterAll(async () => {
    await worker.stop();
  });

  it("serves a queue per kind of each model, and runs each kind's own work", async () => {
    expect(worker.queues.map((w) => w.name).sort()).toEqual(
      ["decode", "encode", "generate"].map((k) => jobCatalog.queue(k as "decode", "sd-tiny")).sort(),
    );
    const latent = encodeFromFloat32(new Float32Array(4 * 8 * 8).fill(0.1), "float32");
    const decode = await submit(
      {
        kind: "decode",
        model: "sd-tiny",
        shape: [1, 4, 8, 8],
        dtype: "float32",
        scaling: null,
        packed: null,
        output: { kind: "image", format: "png" },
      },
      latent,
    );
    const decoded = await decode.answer();
    expect(decoded.result.contentType).toBe("image/png");
    const png = decoded.bytes!;
    expect([...png.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);

    const encode = await submit(
      {
        kind: "encode",
        model: "sd-tiny",
        tensor: null,
        scaling: null,
        sample: false,
        seed: null,
        outputDtype: "float32",
      },
      png,
    );
    // The 64x64 image back to its latent: the encoder ran, not the decoder.
    const encoded = await encode.answer();
    expect([encoded.result.contentType, encoded.result.shape, encoded.result.dtype]).toEqual([
      "tensor/binary",
      [1, 4, 8, 8],
      "float32",
    ]);

    const gen = await submit(generation(2, 64), null);
    const generated = await gen.answer();
    expect(generated.result).toMatchObject({ contentType: "image/png", seed: 7 });
  });

  it("stops a canceled generation at its next step and reports it canceled", async () => {
    const steps = 400;
    const job = await submit(generation(steps, 256), null);
    await expect
      .poll(async () => (await jobs.records.get(job.meta.id))?.progress?.step ?? 0, { timeout: 60_000 })
      .toBeGreaterThan(1);
    await jobs.cancel((await jobs.records.get(job.meta.id))!);
    const err = (await job.answer().catch((e: unknown) => e)) as { code?: string };
    expect(err.code).toBe("canceled");
    const stoppedAt = (await jobs.records.get(job.meta.id))?.progress?.step ?? 0;
    expect(stoppedAt).toBeLessThan(steps);
  });

  it("counts what it ran in its metrics", async () => {
    // BullMQ's `completed` and `failed` (which the metrics count) follow the replies by a moment.
    const count = async (outcome: string) => {
      const line = (await deps.metrics.registry.metrics())
        .split("\n")
        .find(
          (l) =>
            l.startsWith("hybrid_worker_jobs_total") &&
            l.includes('kind="generate"') &&
            l.includes(`outcome="${outcome}"`),
        );
      return Number(line?.split(" ").pop());
    };
    await expect.poll(() => count("succeeded")).toBeGreaterThanOrEqual(1);
    await expect.poll(() => count("canceled")).toBeGreaterThanOrEqual(1);
  });
});

describe("stopping the worker", () => {
  it("hands a job that outlives the grace period back to its queue at once", async () => {
    const worker = await startWorker({
      ...deps,
      workerId: `stopping-${randomUUID().slice(0, 6)}`,
      shutdownGraceMs: 200,
    });
    const job = await submit(generation(400, 256), null, false);
    await expect.poll(() => worker.inFlight, { timeout: 60_000 }).toBe(1);
    await worker.stop();
    expect(worker.inFlight).toBe(0);
    // Back in line for another worker, not left to its lock to lapse (30 s or more).
    const state = await queues.queue(job.meta.queue).getJobState(job.meta.id);
    expect(state).toBe("waiting");
    await queues.queue(job.meta.queue).remove(job.meta.id);
  });
});
