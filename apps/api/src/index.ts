import { existsSync } from "node:fs";
import { resolve } from "node:path";
import {
  catalogSettingsOf,
  createRedis,
  JobEventHub,
  JobProducer,
  JobStore,
  PayloadStore,
  Queues,
  RedisMemoryGauge,
  ReplyListener,
  ResultCache,
  WorkerDirectory,
} from "@hybrid/queue";
import { createLogger, generateLimitsOf, limitsOf, loadSettingsOrExit, RedisFaults } from "@hybrid/service";
import { createApp } from "./app.ts";
import { logDashboardAccess } from "./dashboard.ts";
import { DEFAULT_KEYS_FILE, Env } from "./env.ts";
import { allowedHostsOf, isLoopbackHost, startupRefusal } from "./exposure.ts";
import { KeyStore } from "./keys.ts";
import { ApiMetrics } from "./metrics.ts";
import { KeyRateLimiter } from "./rate-limit.ts";
import { StreamSlots } from "./sse.ts";
import { parseDnsServers, WebhookResolver } from "./webhook-dns.ts";
import { parseAllowedHosts } from "./webhook-guard.ts";
import { startWebhookWorker } from "./webhook-worker.ts";

const env = loadSettingsOrExit("api", Env);
const logger = createLogger("api", env.LOG_LEVEL);
const keysFile = resolve(env.API_KEYS_FILE ?? DEFAULT_KEYS_FILE);
const keysFileExists = existsSync(keysFile);
const keys = await KeyStore.open(keysFile, {
  onError: (err) => logger.error({ file: keysFile, err: err.message }, "keys file not reloaded"),
});
const refusal = startupRefusal({
  host: env.HOST,
  keysEnabled: keys.enabled,
  allowAnonymous: env.ALLOW_ANONYMOUS,
  keysFile,
  keysFileExplicit: env.API_KEYS_FILE !== undefined,
  keysFileExists,
});
if (refusal) {
  logger.fatal({ host: env.HOST, file: keysFile }, refusal);
  process.exit(1);
}
if (keys.enabled) logger.info({ file: keysFile, keys: keys.size }, "API keys required");
else
  logger.warn(
    { file: keysFile },
    isLoopbackHost(env.HOST)
      ? "NO API KEYS: this service is open to every program on this machine (it listens on loopback only). Create one with `pnpm keys create NAME`."
      : "NO API KEYS: this service is open to anyone who can reach it (ALLOW_ANONYMOUS=true). Create one with `pnpm keys create NAME`.",
  );
logDashboardAccess(logger, keys.enabled, env.ADMIN_KEY);
// Followed in the background: a request's auth never waits on the file system.
keys.watch();

// Every connection reports to one place: an outage is told once, then quietly retried.
const redisFaults = new RedisFaults(logger, env.REDIS_URL);
const redis = redisFaults.watch(createRedis(env.REDIS_URL, "command"));
const subscriber = redisFaults.watch(createRedis(env.REDIS_URL, "blocking"));
const catalog = catalogSettingsOf(env);
const queues = new Queues(env.REDIS_URL, env.QUEUE_PREFIX);
const store = new PayloadStore(redis, env.QUEUE_PREFIX, env.PAYLOAD_TTL_SECONDS);
const jobs = new JobStore(redis, queues, store, { prefix: env.QUEUE_PREFIX, catalog });
const hub = new JobEventHub(subscriber, env.QUEUE_PREFIX);
const replies = new ReplyListener(
  redisFaults.watch(createRedis(env.REDIS_URL, "blocking", {}, { shardedSubscribers: true })),
  env.QUEUE_PREFIX,
  store,
  (err) => logger.warn({ err: err.message }, "an answer for a job nobody waits for any more was not stored"),
);
const producer = new JobProducer(queues, catalog, replies);
const allowedHosts = parseAllowedHosts(env.WEBHOOK_ALLOWED_HOSTS);
const webhookResolver = new WebhookResolver({
  servers: parseDnsServers(env.WEBHOOK_DNS_SERVERS),
  timeoutMs: env.WEBHOOK_DNS_TIMEOUT_MS,
  maxLookups: env.WEBHOOK_DNS_MAX_LOOKUPS,
  maxLookupsPerKey: env.WEBHOOK_DNS_MAX_LOOKUPS_PER_KEY,
});
const metrics = env.METRICS_ENABLED
  ? new ApiMetrics({ queues, redis, directory: new WorkerDirectory(redis, env.QUEUE_PREFIX) })
  : null;
const stopping = new AbortController();
const memory = new RedisMemoryGauge(redis, {
  highWater: env.REDIS_MEMORY_HIGH_WATER,
  intervalMs: env.REDIS_MEMORY_SAMPLE_MS,
  onChange: (full, { used, max }) =>
    full
      ? logger.warn(
          { used, max, highWater: env.REDIS_MEMORY_HIGH_WATER },
          "redis memory full: refusing new work",
        )
      : logger.info({ used, max }, "redis memory below its high-water mark: taking new work"),
});
// A failed sample keeps the last reading; Redis being unreachable is reported elsewhere.
void memory.start();

const app = createApp({
  redis,
  store,
  jobs,
  hub,
  producer,
  keys,
  limiter: new KeyRateLimiter(redis, env.QUEUE_PREFIX),
  directory: new WorkerDirectory(redis, env.QUEUE_PREFIX),
  logger,
  limits: limitsOf(env),
  generateLimits: generateLimitsOf(env),
  modelLoadingSeconds: env.MODEL_LOADING_SECONDS,
  cache:
    env.RESULT_CACHE_TTL_SECONDS > 0
      ? new ResultCache(redis, env.QUEUE_PREFIX, env.RESULT_CACHE_TTL_SECONDS, env.RESULT_CACHE_MAX_BYTES)
      : null,
  requestTimeoutMs: env.REQUEST_TIMEOUT_MS,
  maxBodyBytes: env.MAX_BODY_BYTES,
  maxJsonBodyBytes: env.MAX_JSON_BODY_BYTES,
  maxBacklog: env.MAX_QUEUE_BACKLOG,
  memory,
  idempotencyTtlSeconds: env.IDEMPOTENCY_TTL_SECONDS,
  webhookAllowedHosts: allowedHosts,
  webhookResolver,
  canSignWebhooks: (p) => (p.key ? true : env.WEBHOOK_SECRET !== undefined),
  stopping: stopping.signal,
  sse: {
    keepAliveMs: 15_000,
    staleMs: 10_000,
    stopping: stopping.signal,
    slots: new StreamSlots(env.MAX_SSE_STREAMS_PER_KEY),
  },
  dashboard: { queues, adminKey: env.ADMIN_KEY },
  metrics,
  allowedHosts: allowedHostsOf(env.ALLOWED_HOSTS, env.HOST),
});
const webhooks = startWebhookWorker(keys, logger, {
  target: { redisUrl: env.REDIS_URL, prefix: env.QUEUE_PREFIX },
  concurrency: env.WEBHOOK_CONCURRENCY,
  perOwnerConcurrency: env.WEBHOOK_CONCURRENCY_PER_OWNER,
  timeoutMs: env.WEBHOOK_TIMEOUT_MS,
  allowedHosts,
  defaultSecret: env.WEBHOOK_SECRET,
  breaker: { failures: env.WEBHOOK_BREAKER_FAILURES, cooldownMs: env.WEBHOOK_BREAKER_COOLDOWN_MS },
  // The whole retry schedule (every backoff and every attempt's timeout), plus a cool-down.
  maxAgeMs:
    env.WEBHOOK_BACKOFF_MS * (2 ** env.WEBHOOK_ATTEMPTS - 1) +
    env.WEBHOOK_ATTEMPTS * env.WEBHOOK_TIMEOUT_MS +
    env.WEBHOOK_BREAKER_COOLDOWN_MS,
  resolver: webhookResolver,
  isLatestProgress: (jobId, msgId) => jobs.events.isLatestProgress(jobId, msgId),
  onError: redisFaults.onError,
});
metrics?.observeWebhooks(webhooks);

const server = app.listen(env.PORT, env.HOST, () => {
  const addr = server.address();
  logger.info({ port: typeof addr === "object" && addr ? addr.port : env.PORT }, "api listening");
});
// Sync requests may wait up to REQUEST_TIMEOUT_MS; Node's default request timeout must not cut them first.
server.requestTimeout = env.REQUEST_TIMEOUT_MS + 30_000;
server.headersTimeout = 60_000;

async function shutdown(signal: string) {
  if (stopping.signal.aborted) return;
  logger.info({ signal, graceMs: env.SHUTDOWN_GRACE_MS }, "shutting down");
  // Ends event streams, and tells sync waiters that closed connections are not hang-ups.
  stopping.abort();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const grace = new Promise<void>((r) => setTimeout(r, env.SHUTDOWN_GRACE_MS).unref());
  await Promise.race([closed, grace]);
  server.closeAllConnections();
  memory.stop();
  await webhooks.close();
  await queues.close();
  hub.close();
  replies.close();
  redis.disconnect();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
