import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { DiffusionRuntime, SessionHost, VaeRuntime } from "@hybrid/inference";
import type { ModelInfo } from "@hybrid/protocol";
import { catalogSettingsOf } from "@hybrid/queue";
import { createLogger, limitsOf, loadSettingsOrExit } from "@hybrid/service";
import { DEFAULT_PROVIDERS, Env } from "./env.ts";
import { modelRuns } from "./job-runner.ts";
import { checkMemoryBudget, defaultMemoryBudget } from "./memory-budget.ts";
import { WorkerMetrics } from "./metrics.ts";
import { modelSizes, modelSources } from "./models.ts";
import { logProviders, modelProviders } from "./providers.ts";
import { startWorker } from "./start-worker.ts";

const env = loadSettingsOrExit("worker", Env);
const log = createLogger("worker", env.LOG_LEVEL);

const sources = await modelSources(env, log);
if (sources.length === 0) {
  log.fatal(
    { dir: env.MODELS_DIR },
    "no models to serve: set MODELS or put optimum ONNX model directories in MODELS_DIR",
  );
  process.exit(1);
}
// Before loading anything: a model set this worker cannot hold is refused now, not by the
// kernel's OOM killer halfway through loading it.
const budget = {
  bytes: env.MODEL_MEMORY_BUDGET ?? defaultMemoryBudget(),
  explicit: env.MODEL_MEMORY_BUDGET !== undefined,
};
const sizes = await modelSizes(sources, env.SESSION_THREADS);
const refusal = checkMemoryBudget(sizes, budget);
if (refusal) {
  log.fatal(
    {
      models: Object.fromEntries(sizes.map((m) => [m.id, m.bytes])),
      totalBytes: sizes.reduce((n, m) => n + m.bytes, 0),
      budgetBytes: budget.bytes,
    },
    refusal,
  );
  process.exit(1);
}
// One set of session threads for every model, each model in one of them: a pipeline's VAE
// sessions serve the VAE endpoints too.
const hostOptions = {
  threads: env.SESSION_THREADS,
  providers: env.EXECUTION_PROVIDERS ?? DEFAULT_PROVIDERS,
  intraOpThreads: env.ORT_INTRA_OP_THREADS,
  allowSpinning: env.ORT_ALLOW_SPINNING,
};
const host = new SessionHost(hostOptions);
const metrics = new WorkerMetrics();
// Pipelines first: they are pinned to one thread each before any of their graphs is loaded.
const diffusion = await DiffusionRuntime.open(sources, host);
const vae = await VaeRuntime.open(
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
/** What this worker announces: each model's VAE layout, plus what it generates for pipelines. */
const models: ModelInfo[] = vae.models.map((m) => {
  const g = diffusion.models.get(m.id);
  return g ? { ...m, generation: g } : m;
});
// What each model actually runs on: logged, a metric label, and announced for /health/ready.
const providers = modelProviders(host.models, sources);
logProviders(providers, log, env.EXECUTION_PROVIDERS !== undefined);
for (const p of providers) metrics.modelProvider(p.model, p.provider);
log.info(
  {
    models: models.map(
      (m) => `${m.id} (${m.family}, ${[...m.operations, ...(m.generation?.tasks ?? [])].join("+")})`,
    ),
  },
  "models loaded",
);

const worker = await startWorker({
  redisUrl: env.REDIS_URL,
  prefix: env.QUEUE_PREFIX,
  workerId: `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`,
  models,
  providers: Object.fromEntries(providers.map((p) => [p.model, p.provider])),
  runs: modelRuns({
    vae,
    diffusion,
    maxImagePixels: env.MAX_IMAGE_PIXELS,
    maxOutputBytes: env.MAX_OUTPUT_BYTES,
  }),
  log,
  metrics,
  catalog: catalogSettingsOf(env),
  payloadTtlSeconds: env.PAYLOAD_TTL_SECONDS,
  capacity: { concurrency: env.CONCURRENCY, maxBatchSize: env.MAX_BATCH_SIZE, prefetch: env.PREFETCH },
  ...(env.LOCK_DURATION_MS !== undefined ? { lockMs: env.LOCK_DURATION_MS } : {}),
  shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
  heartbeatSeconds: env.HEARTBEAT_SECONDS,
  healthPort: env.HEALTH_PORT,
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "signal received");
  await worker.stop();
  await vae.close();
  await host.close();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
