import { JobKind, type ModelInfo } from "@hybrid/protocol";
import { jobCatalog, knownModelsKey, type Queues, type WorkerDirectory } from "@hybrid/queue";
import type { Worker } from "bullmq";
import type { Request, RequestHandler } from "express";
import type { Redis } from "ioredis";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** What the API's metrics read on each scrape: queue counts, live workers, models ever served. */
export interface ApiMetricsDeps {
  queues: Pick<Queues, "queue" | "prefix">;
  directory: Pick<WorkerDirectory, "list">;
  redis: Pick<Redis, "hkeys">;
}

/** The route label of requests no Express route matched (404s, static files): never the raw URL. */
export const UNMATCHED_ROUTE = "unmatched";

const ALL_KINDS = JobKind.options;
/** The queue states the backlog gauge reports; `waiting` is what admission (429) and autoscaling read. */
const STATES = ["waiting", "active", "delayed"] as const;

/** A sync decode is tens of ms; a sync generation or a long SSE stream runs for minutes. */
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

const kindsOf = (m: ModelInfo): JobKind[] => [
  ...m.operations,
  ...(m.generation ? ["generate" as const] : []),
];

/**
 * The route pattern a request matched (`/v1/vae/:model/decode`), so the label's values are
 * bounded by the routes the app declares, whatever URLs clients send.
 */
export function routeLabel(req: Request): string {
  const route = (req as Request & { route?: { path?: unknown } }).route;
  if (!route || route.path === undefined) return UNMATCHED_ROUTE;
  const path = Array.isArray(route.path) ? route.path.join("|") : String(route.path);
  return `${req.baseUrl ?? ""}${path}`;
}

/**
 * The API's Prometheus metrics, in a registry of its own (several apps may live in one test
 * process): requests by route and status with their durations, the job queues' backlog and the
 * live workers (read from Redis on each scrape), webhook deliveries by outcome, result-cache
 * hits and misses, and prom-client's default Node metrics.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"method" | "route" | "status">;
  private readonly durations: Histogram<"method" | "route" | "status">;
  private readonly cache: Counter<"result">;
  private readonly webhooks: Counter<"outcome">;
  /** Kinds of work per model seen in this process, so a queue keeps reporting once its workers are gone. */
  private readonly kindsByModel = new Map<string, Set<JobKind>>();

  constructor(private readonly deps: ApiMetricsDeps) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: "hybrid_api_requests_total",
      help: "HTTP requests answered, by method, route pattern and status (`aborted`: the client left first).",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.durations = new Histogram({
      name: "hybrid_api_request_duration_seconds",
      help: "Time from a request's arrival to the end of its answer, in seconds.",
      labelNames: ["method", "route", "status"],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.cache = new Counter({
      name: "hybrid_api_result_cache_total",
      help: "Generation answers served from the result cache (hit) or computed (miss), from `x-cache`.",
      labelNames: ["result"],
      registers,
    });
    this.webhooks = new Counter({
      name: "hybrid_api_webhook_deliveries_total",
      help: "Webhook delivery attempts by outcome: delivered, retry (will be tried again), failed (for good).",
      labelNames: ["outcome"],
      registers,
    });
    // Known series exist from the start, at 0: rate() and alerts see the first increment.
    for (const result of ["hit", "miss"]) this.cache.inc({ result }, 0);
    const self = this;
    new Gauge({
      name: "hybrid_queue_jobs",
      help: "Jobs in a queue of the job catalog by state, read on scrape; state=waiting is the backlog.",
      labelNames: ["queue", "state"],
      registers,
      async collect() {
        this.reset();
        const names = await self.queueNames();
        await Promise.all(
          names.map(async (queue) => {
            // A queue whose counts cannot be read (Redis down) is left out of this scrape, not reported as 0.
            const counts = await self.deps.queues
              .queue(queue)
              .getJobCounts(...STATES)
              .catch(() => null);
            if (!counts) return;
            // BullMQ's waiting count (getWaitingCount) includes a paused queue's jobs.
            const value: Record<string, number> = {
              ...counts,
              waiting: (counts.waiting ?? 0) + (counts.paused ?? 0),
            };
            for (const state of STATES) this.set({ queue, state }, value[state] ?? 0);
          }),
        );
      },
    });
    new Gauge({
      name: "hybrid_workers_live",
      help: "Workers announced in the worker directory (heartbeat not expired), read on scrape.",
      registers,
      async collect() {
        this.reset();
        const workers = await self.deps.directory.list().catch(() => null);
        if (workers) this.set(workers.length);
      },
    });
    new Gauge({
      name: "hybrid_model_workers",
      help: "Live workers serving each model, read on scrape.",
      labelNames: ["model"],
      registers,
      async collect() {
        this.reset();
        const workers = await self.deps.directory.list().catch(() => null);
        const counts = new Map<string, number>();
        for (const w of workers ?? [])
          for (const m of w.models) counts.set(m.id, (counts.get(m.id) ?? 0) + 1);
        for (const [model, n] of counts) this.set({ model }, n);
      },
    });
  }

  /**
   * Every queue name the API knows: the kinds each live worker's models take, kinds seen
   * earlier in this process, every kind of a model some worker served before (the known-models
   * hash: the backlog of a model with no worker left is the scale-from-zero signal), and the
   * webhooks queue.
   */
  private async queueNames(): Promise<string[]> {
    const [workers, known] = await Promise.all([
      this.deps.directory.list().catch(() => []),
      this.deps.redis.hkeys(knownModelsKey(this.deps.queues.prefix)).catch(() => [] as string[]),
    ]);
    for (const w of workers)
      for (const m of w.models) {
        const kinds = this.kindsByModel.get(m.id) ?? new Set<JobKind>();
        for (const k of kindsOf(m)) kinds.add(k);
        this.kindsByModel.set(m.id, kinds);
      }
    for (const id of known) if (!this.kindsByModel.has(id)) this.kindsByModel.set(id, new Set(ALL_KINDS));
    const names = [...this.kindsByModel].flatMap(([model, kinds]) =>
      [...kinds].map((k) => jobCatalog.queue(k, model)),
    );
    return [...names.sort(), jobCatalog.webhookQueue];
  }

  /** Counts a request (and a result-cache hit or miss) once its answer ends or its client leaves. */
  readonly track: RequestHandler = (req, res, next) => {
    const start = performance.now();
    res.once("close", () => {
      const labels = {
        method: req.method,
        route: routeLabel(req),
        status: res.writableFinished ? String(res.statusCode) : "aborted",
      };
      this.requests.inc(labels);
      this.durations.observe(labels, (performance.now() - start) / 1000);
      const cache = res.getHeader("x-cache");
      if (res.writableFinished && (cache === "HIT" || cache === "MISS"))
        this.cache.inc({ result: cache.toLowerCase() });
    });
    next();
  };

  /**
   * `GET /metrics` (not counted itself), then request tracking for everything after it. A plain
   * middleware, not a router: every request passes it, and entering a router costs each one.
   */
  router(): RequestHandler {
    return (req, res, next) => {
      if (req.path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD"))
        return this.track(req, res, next);
      this.registry.metrics().then(
        (body) => {
          res.setHeader("Content-Type", this.registry.contentType);
          res.end(body);
        },
        (e: unknown) => next(e),
      );
    };
  }

  /** Counts the webhook worker's attempts: completed = delivered; failed = retry, or failed once final. */
  observeWebhooks(worker: Pick<Worker, "on">): void {
    for (const outcome of ["delivered", "retry", "failed"]) this.webhooks.inc({ outcome }, 0);
    worker.on("completed", () => this.webhooks.inc({ outcome: "delivered" }));
    worker.on("failed", (job) => this.webhooks.inc({ outcome: job?.finishedOn ? "failed" : "retry" }));
  }
}
