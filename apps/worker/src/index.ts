import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { hostname } from "node:os";
import { DiffusionRuntime, SessionHost, VaeRuntime } from "@hybrid/inference";
import type { ModelInfo } from "@hybrid/protocol";
import {
  bullConnection,
  bullPrefix,
  cancelChannel,
  catalogSettingsOf,
  createLogger,
  createRedis,
  JobStore,
  jobCatalog,
  limitsOf,
  PayloadStore,
  Queues,
  ReplySender,
  WorkerDirectory,
} from "@hybrid/queue";
import { type Job, Worker } from "bullmq";
import { loadEnv } from "./env.ts";
import { attachLifecycle } from "./lifecycle.ts";
import { WorkerMetrics } from "./metrics.ts";
import { modelSources } from "./models.ts";
import { createProcessor } from "./processor.ts";

const env = loadEnv();
const log = createLogger("worker", env.LOG_LEVEL);
const workerId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`;

const sources = await modelSources(env, log);
if (sources.length === 0) {
  log.fatal(
    { dir: env.MODELS_DIR },
    "no models to serve: set MODELS or put optimum ONNX model directories in MODELS_DIR",
  );
  process.exit(1);
}
// One set of session threads for every model: a pipeline's VAE sessions serve the VAE endpoints too.
const hostOptions = {
  threads: env.SESSION_THREADS,
  providers: env.EXECUTION_PROVIDERS,
  intraOpThreads: env.ORT_INTRA_OP_THREADS,
  allowSpinning: env.ORT_ALLOW_SPINNING,
};
const host = new SessionHost(hostOptions);
const metrics = new WorkerMetrics();
const runtime = await VaeRuntime.open(
  sources,
  {
    ...hostOptions,
    limits: limitsOf(env),
    fps: env.VIDEO_FPS,
    ...(env.FFMPEG_PATH ? { ffmpegPath: env.FFMPEG_PATH } : {}),
    batching: {
      maxBatchSize: env.MAX_BATCH_SIZE,
      windowMs: env.BATCH_WINDOW_MS,
      onRun: (entries) => metrics.batchRun(entries),
    },
  },
  host,
);
const diffusion = await DiffusionRuntime.open(sources, host);
const generation = diffusion.models;
/** What this worker announces: each model's VAE layout, plus what it generates for pipelines. */
const models: ModelInfo[] = runtime.models.map((m) => {
  const g = generation.get(m.id);
  return g ? { ...m, generation: g } : m;
});
log.info(
  {
    models: models.map(
      (m) => `${m.id} (${m.family}, ${[...m.operations, ...(m.generation?.tasks ?? [])].join("+")})`,
    ),
  },
  "models loaded",
);

const redis = createRedis(env.REDIS_URL, "command");
redis.on("error", (err) => log.warn({ err: err.message }, "redis error"));
const store = new PayloadStore(redis, env.QUEUE_PREFIX, env.PAYLOAD_TTL_SECONDS);
const queues = new Queues(env.REDIS_URL, env.QUEUE_PREFIX);
const jobs = new JobStore(redis, queues, store, {
  prefix: env.QUEUE_PREFIX,
  catalog: catalogSettingsOf(env),
});
const directory = new WorkerDirectory(redis, env.QUEUE_PREFIX, Math.ceil(env.HEARTBEAT_SECONDS * 3));
const process_ = createProcessor(
  { vae: runtime, diffusion, maxImagePixels: env.MAX_IMAGE_PIXELS },
  store,
  jobs,
  log,
  { metrics, replies: new ReplySender(redis, env.QUEUE_PREFIX, store) },
);

// Jobs in flight and their lock tokens, to hand them back if a shutdown outlasts its grace.
const inFlight = new Map<string, { job: Job; token: string }>();
const processor = async (job: Job, token?: string, signal?: AbortSignal) => {
  const key = `${job.queueName}/${job.id}`;
  if (token) inFlight.set(key, { job, token });
  try {
    return await process_(job, token, signal);
  } finally {
    inFlight.delete(key);
  }
};

// One queue per (kind, model) this worker can serve.
const workers = models.flatMap((m) =>
  [...m.operations, ...(m.generation ? (["generate"] as const) : [])].map((kind) => {
    const w = new Worker(jobCatalog.queue(kind, m.id), processor, {
      connection: bullConnection(env.REDIS_URL),
      prefix: bullPrefix(env.QUEUE_PREFIX, jobCatalog.queue(kind, m.id)),
      // Recorded on each job it takes (BullMQ's processedBy): which worker ran what.
      name: workerId,
      // With batching, a VAE queue holds enough jobs in flight to fill a batch per session thread.
      concurrency: kind === "generate" ? env.CONCURRENCY : env.CONCURRENCY * env.MAX_BATCH_SIZE,
      ...jobCatalog.workerOptions(env.LOCK_DURATION_MS),
    });
    w.on("error", (err) => log.warn({ err: err.message, queue: w.name }, "queue error"));
    attachLifecycle(w, jobs, store, log);
    metrics.observe(w, kind, m.id);
    return w;
  }),
);
await Promise.all(workers.map((w) => w.waitUntilReady()));

// A cancel of a running job reaches every worker; the one running it aborts it.
const cancels = createRedis(env.REDIS_URL, "blocking");
cancels.on("error", (err) => log.warn({ err: err.message }, "redis error"));
cancels.on("message", (_channel: string, jobId: string) => {
  for (const w of workers)
    if (w.cancelJob(jobId, "canceled")) log.info({ jobId, queue: w.name }, "cancel asked");
});
await cancels.subscribe(cancelChannel(env.QUEUE_PREFIX));

const startedAt = new Date().toISOString();
const announce = () =>
  directory
    .announce({ workerId, hostname: hostname(), pid: process.pid, startedAt, models })
    .catch((err: Error) => log.warn({ err: err.message }, "heartbeat failed"));
await announce();
const heartbeat = setInterval(announce, env.HEARTBEAT_SECONDS * 1000);
log.info({ workerId, queues: workers.map((w) => w.name) }, "worker ready");

const health =
  env.HEALTH_PORT > 0
    ? createServer((req, res) => {
        if (req.url === "/metrics") return void metrics.serve(res);
        const ready = req.url === "/health/live" || workers.every((w) => w.isRunning());
        res.writeHead(ready ? 200 : 503, { "content-type": "application/json" });
        res.end(
          JSON.stringify(
            ready ? { status: "ok", workerId } : { error: "worker not running", code: "no_workers" },
          ),
        );
      }).listen(env.HEALTH_PORT)
    : undefined;

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info(
    { signal, inFlight: inFlight.size, graceMs: env.SHUTDOWN_GRACE_MS },
    "shutting down: finishing jobs in flight",
  );
  clearInterval(heartbeat);
  health?.close();
  await directory.withdraw(workerId).catch(() => {});
  const closed = Promise.all(workers.map((w) => w.close()));
  const graceOver = new Promise<"late">((r) => setTimeout(() => r("late"), env.SHUTDOWN_GRACE_MS).unref());
  if ((await Promise.race([closed, graceOver])) === "late") {
    // Hand what still runs back to its queue now, rather than after its lock lapses.
    await Promise.all(
      [...inFlight.values()].map(({ job, token }) =>
        job.moveToWait(token).then(
          () => log.info({ jobId: job.id, queue: job.queueName }, "job handed back"),
          (err: Error) => log.warn({ jobId: job.id, err: err.message }, "job not handed back"),
        ),
      ),
    );
    await Promise.all(workers.map((w) => w.close(true)));
  }
  // Only now: a cancel during the grace period still reaches the jobs finishing in it.
  cancels.disconnect();
  await runtime.close();
  await host.close();
  await queues.close();
  redis.disconnect();
  log.info("worker stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
