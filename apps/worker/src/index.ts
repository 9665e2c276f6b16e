import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { hostname } from "node:os";
import { VaeRuntime } from "@hybrid/inference";
import {
  bullConnection,
  createRedis,
  limitsOf,
  PayloadStore,
  queueName,
  WorkerDirectory,
} from "@hybrid/queue";
import { Worker } from "bullmq";
import { pino } from "pino";
import { loadEnv } from "./env.ts";
import { modelSources } from "./models.ts";
import { createProcessor } from "./processor.ts";

const env = loadEnv();
const log = pino({ level: env.LOG_LEVEL, base: { app: "worker" } });
const workerId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`;

const sources = await modelSources(env, log);
if (sources.length === 0) {
  log.fatal(
    { dir: env.MODELS_DIR },
    "no models to serve: set MODELS or put optimum ONNX model directories in MODELS_DIR",
  );
  process.exit(1);
}
const runtime = await VaeRuntime.open(sources, {
  threads: env.SESSION_THREADS,
  providers: env.EXECUTION_PROVIDERS,
  intraOpThreads: env.ORT_INTRA_OP_THREADS,
  allowSpinning: env.ORT_ALLOW_SPINNING,
  limits: limitsOf(env),
  fps: env.VIDEO_FPS,
  ...(env.FFMPEG_PATH ? { ffmpegPath: env.FFMPEG_PATH } : {}),
});
log.info(
  { models: runtime.models.map((m) => `${m.id} (${m.family}, ${m.operations.join("+")})`) },
  "models loaded",
);

const redis = createRedis(env.REDIS_URL, "command");
redis.on("error", (err) => log.warn({ err: err.message }, "redis error"));
const store = new PayloadStore(redis, env.QUEUE_PREFIX, env.PAYLOAD_TTL_SECONDS);
const directory = new WorkerDirectory(redis, env.QUEUE_PREFIX, Math.ceil(env.HEARTBEAT_SECONDS * 3));
const processor = createProcessor(runtime, store, log);

const workers = runtime.models.map((m) => {
  const w = new Worker(queueName(m.id), processor, {
    connection: bullConnection(env.REDIS_URL),
    prefix: env.QUEUE_PREFIX,
    concurrency: env.CONCURRENCY,
    lockDuration: env.LOCK_DURATION_MS,
  });
  w.on("error", (err) => log.warn({ err: err.message, model: m.id }, "queue error"));
  return w;
});
await Promise.all(workers.map((w) => w.waitUntilReady()));

const startedAt = new Date().toISOString();
const announce = () =>
  directory
    .announce({ workerId, hostname: hostname(), pid: process.pid, startedAt, models: runtime.models })
    .catch((err: Error) => log.warn({ err: err.message }, "heartbeat failed"));
await announce();
const heartbeat = setInterval(announce, env.HEARTBEAT_SECONDS * 1000);
log.info({ workerId, queues: runtime.models.map((m) => queueName(m.id)) }, "worker ready");

const health =
  env.HEALTH_PORT > 0
    ? createServer((req, res) => {
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
  log.info({ signal }, "shutting down: finishing jobs in flight");
  clearInterval(heartbeat);
  health?.close();
  await directory.withdraw(workerId).catch(() => {});
  await Promise.all(workers.map((w) => w.close()));
  await runtime.close();
  redis.disconnect();
  log.info("worker stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
