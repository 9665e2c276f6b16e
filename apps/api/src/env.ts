import { SharedEnv } from "@hybrid/service";
import { z } from "zod";

/** The API's settings, parsed once from the environment. Defaults work on a laptop. */
export const Env = z.object({
  ...SharedEnv,
  /** HTTP port. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /**
   * Address to listen on. Loopback by default: only this machine can call the API. Any other
   * address (`0.0.0.0` in a container) needs API keys, or `ALLOW_ANONYMOUS=true` (see exposure.ts).
   */
  HOST: z.string().min(1).default("127.0.0.1"),
  /**
   * Listening on a non-loopback `HOST` without API keys is refused at start unless this says so:
   * the service is then open to anyone who can reach it.
   */
  ALLOW_ANONYMOUS: z.stringbool().default(false),
  /**
   * Host names (`Host` header) the API answers, comma-separated, each `name` (any port) or
   * `name:port`; `*` answers any. Unset: the loopback names (`localhost`, `127.0.0.1`, `[::1]`)
   * while `HOST` is loopback, any host otherwise. Stops DNS rebinding from reading a local API.
   */
  ALLOWED_HOSTS: z.string().optional(),
  /** How long a synchronous request waits for its job before answering 504 with the job id, in ms. */
  REQUEST_TIMEOUT_MS: z.coerce.number().int().positive().default(120_000),
  /** Largest request body accepted, in bytes (larger: 413). */
  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(64 * 1024 * 1024),
  /**
   * Largest JSON generation body without an image (text-to-image), in bytes (larger: 413). Its
   * text fields are capped at MAX_TEXT_CHARS each, so this only bounds what else a body carries.
   */
  MAX_JSON_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(256 * 1024),
  /**
   * The API keys file (`pnpm keys create ...` writes it). With keys in it, every route but
   * /health/* needs `Authorization: Bearer <key>`; without, the service is open to anyone who can
   * reach it. Unset: `keys.json` in the working directory, which may be missing (no keys); set,
   * the file must exist (a missing one refuses to start: a mount that failed must not open the API).
   */
  API_KEYS_FILE: z.string().min(1).optional(),
  /** Seconds a 503 `model_loading` says to wait (`estimated_time`, Retry-After) while a known model has no worker. */
  MODEL_LOADING_SECONDS: z.coerce.number().int().positive().default(20),
  /** Seconds a cached generation answer (a request with a seed, `x-use-cache` not false) is kept. */
  RESULT_CACHE_TTL_SECONDS: z.coerce.number().int().min(0).default(3600),
  /**
   * Bytes all cached generation answers may take in Redis together; the oldest are evicted
   * first. The cache must not lean on Redis' memory policy: queues need `noeviction`.
   */
  RESULT_CACHE_MAX_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(64 * 1024 * 1024),
  /**
   * The share of Redis' `maxmemory` (0–1) at which new work is refused (503 `overloaded` with
   * Retry-After), before Redis itself refuses writes and admitted jobs cannot store their results.
   * 1: only at `maxmemory`. No effect when `maxmemory` is 0 (unlimited).
   */
  REDIS_MEMORY_HIGH_WATER: z.coerce.number().gt(0).max(1).default(0.85),
  /** ms between samples of Redis' memory use (`INFO memory`, on each master of a cluster). */
  REDIS_MEMORY_SAMPLE_MS: z.coerce.number().int().min(50).default(500),
  /** Jobs waiting in one queue beyond which new work is refused with 429 and a Retry-After. */
  MAX_QUEUE_BACKLOG: z.coerce.number().int().positive().default(1000),
  /** Seconds an Idempotency-Key keeps pointing at the job it created. */
  IDEMPOTENCY_TTL_SECONDS: z.coerce
    .number()
    .int()
    .positive()
    .default(24 * 3600),
  /** Signs webhooks (`whsec_...`) when the service runs without API keys (each key has its own). */
  WEBHOOK_SECRET: z.string().startsWith("whsec_").optional(),
  /**
   * Hosts webhooks may target even though they resolve to loopback or private addresses, or use a
   * port other than 80/443 (comma-separated, e.g. `127.0.0.1,hooks.internal:8443,[::1]:3000`): a
   * host alone allows any port, `host:port` that port only. Everything else private is refused.
   */
  WEBHOOK_ALLOWED_HOSTS: z.string().default(""),
  /**
   * Nameservers that resolve webhook hosts (comma-separated `ip` or `ip:port`); empty: the
   * system's (resolv.conf). Lookups use c-ares, never the thread pool that file reads share.
   */
  WEBHOOK_DNS_SERVERS: z.string().default(""),
  /** The most a webhook host lookup (A and AAAA, every try) may take, in ms; then the submission gets 400. */
  WEBHOOK_DNS_TIMEOUT_MS: z.coerce.number().int().positive().default(5000),
  /** Webhook host lookups for submissions in flight at once, over all keys (more: 429 `overloaded`). */
  WEBHOOK_DNS_MAX_LOOKUPS: z.coerce.number().int().positive().default(64),
  /** Webhook host lookups for one key's submissions in flight at once (more: 429 `rate_limited`). */
  WEBHOOK_DNS_MAX_LOOKUPS_PER_KEY: z.coerce.number().int().positive().default(4),
  /** Per-attempt timeout of a webhook delivery, in ms. */
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  /**
   * On SIGTERM, ms to let sync requests in flight get their answers before their connections
   * are closed (their jobs go on and stay fetchable); event streams end at once.
   */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(30_000),
  /**
   * Event streams (`GET /v1/jobs/{id}/events`) one API key may hold open at once on one API
   * process (all anonymous callers share one count); one more gets 429 `rate_limited`.
   */
  MAX_SSE_STREAMS_PER_KEY: z.coerce.number().int().min(1).default(32),
  /** Webhook deliveries this API process makes at once. */
  WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
  /**
   * Deliveries of one owner (API key) this API process makes at once; the owner's others wait
   * (re-queued for about a second), so a receiver that hangs holds at most this many of
   * WEBHOOK_CONCURRENCY. Capped at WEBHOOK_CONCURRENCY.
   */
  WEBHOOK_CONCURRENCY_PER_OWNER: z.coerce.number().int().min(1).max(256).default(4),
  /** Consecutive failed deliveries to one host (host:port) after which its circuit opens. */
  WEBHOOK_BREAKER_FAILURES: z.coerce.number().int().min(1).default(5),
  /** ms deliveries to a host whose circuit is open are postponed before one is tried again. */
  WEBHOOK_BREAKER_COOLDOWN_MS: z.coerce.number().int().positive().default(30_000),
  /**
   * The key of the queue dashboard (/admin/queues): HTTP Basic with it as the password (any user),
   * or `Authorization: Bearer <it>`. Set, it is always needed; unset, the dashboard is off (404)
   * once the service has API keys, and open like everything else while it has none.
   * At least 32 characters (e.g. `openssl rand -hex 32`): it is tried from the network.
   */
  ADMIN_KEY: z.string().min(32, "must be at least 32 characters (e.g. `openssl rand -hex 32`)").optional(),
  /** Serve Prometheus metrics at `GET /metrics`, without auth like /health/* (scrapers carry no keys). */
  METRICS_ENABLED: z.stringbool().default(true),
});
export type Env = z.infer<typeof Env>;

export const loadEnv = (source: NodeJS.ProcessEnv = process.env): Env => Env.parse(source);

/** The keys file when `API_KEYS_FILE` is unset (may be missing: then there are no keys). */
export const DEFAULT_KEYS_FILE = "keys.json";
