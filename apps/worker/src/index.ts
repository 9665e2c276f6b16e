import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { DiffusionRuntime, SessionHost, VaeRuntime } from "@hybrid/inference";
import type { ModelInfo } from "@hybrid/protocol";
import { catalogSettingsOf } from "@hybrid/queue";
import { createLogger, limitsOf, loadSettingsOrExit } from "@hybrid/service";
import { Env } from "./env.ts";
import { modelRuns } from "./job-runner.ts";
import { WorkerMetrics } from "./metrics.ts";
import { modelSources } from "./models.ts";
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
// One set of session threads for every model: a pipeline's VAE sessions serve the VAE endpoints too.
const hostOptions = {
  threads: env.SESSION_THREADS,
  providers: env.EXECUTION_PROVIDERS,
  intraOpThreads: env.ORT_INTRA_OP_THREADS,
  allowSpinning: env.ORT_ALLOW_SPINNING,
};
const host = new SessionHost(hostOptions);
const metrics = new WorkerMetrics();
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
const diffusion = await DiffusionRuntime.open(sources, host);
/** What this worker announces: each model's VAE layout, plus what it generates for pipelines. */
const models: ModelInfo[] = vae.models.map((m) => {
  const g = diffusion.models.get(m.id);
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

const worker = await startWorker({
  redisUrl: env.REDIS_URL,
  prefix: env.QUEUE_PREFIX,
  workerId: `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`,
  models,
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
  capacity: { concurrency: env.CONCURRENCY, maxBatchSize: env.MAX_BATCH_SIZE },
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
