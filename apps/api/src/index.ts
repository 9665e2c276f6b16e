import { createRedis, JobProducer, limitsOf, PayloadStore, WorkerDirectory } from "@hybrid/queue";
import { pino } from "pino";
import { createApp } from "./app.ts";
import { loadEnv } from "./env.ts";

const env = loadEnv();
const logger = pino({ level: env.LOG_LEVEL, base: { app: "api" } });
const redis = createRedis(env.REDIS_URL, "command");
redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
const producer = new JobProducer({
  redisUrl: env.REDIS_URL,
  prefix: env.QUEUE_PREFIX,
  attempts: env.JOB_ATTEMPTS,
});

const app = createApp({
  redis,
  store: new PayloadStore(redis, env.QUEUE_PREFIX, env.PAYLOAD_TTL_SECONDS),
  producer,
  directory: new WorkerDirectory(redis, env.QUEUE_PREFIX),
  logger,
  limits: limitsOf(env),
  requestTimeoutMs: env.REQUEST_TIMEOUT_MS,
  maxBodyBytes: env.MAX_BODY_BYTES,
});

const server = app.listen(env.PORT, env.HOST, () => {
  const addr = server.address();
  logger.info({ port: typeof addr === "object" && addr ? addr.port : env.PORT }, "api listening");
});
// Sync requests may wait up to REQUEST_TIMEOUT_MS; Node's default request timeout must not cut them first.
server.requestTimeout = env.REQUEST_TIMEOUT_MS + 30_000;
server.headersTimeout = 60_000;

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, "shutting down");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await producer.close();
  redis.disconnect();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
