import { createServer, type Server } from "node:http";
import { hostname } from "node:os";
import type { JobKind, ModelInfo } from "@hybrid/protocol";
import {
  type CatalogSettings,
  cancelChannel,
  createRedis,
  JobStore,
  jobCatalog,
  openJobWorker,
  PayloadStore,
  Queues,
  ReplySender,
  type WorkerCapacity,
  WorkerDirectory,
} from "@hybrid/queue";
import { RedisFaults } from "@hybrid/service";
import type { Job, Worker } from "bullmq";
import type { Logger } from "pino";
import { createJobRunner, type Runs } from "./job-runner.ts";
import { attachLifecycle } from "./lifecycle.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** What a worker is made of: where the queues are, what it serves, and how it runs the work. */
export interface WorkerDeps {
  redisUrl: string;
  prefix: string;
  /** This process's id in the worker directory and on each job it takes (`processedBy`). */
  workerId: string;
  /** The models it serves, as it announces them. */
  models: ModelInfo[];
  /**
   * The execution provider each model's sessions run on, by model id: announced with the models
   * (the API's `/health/ready` shows it) and shown in this worker's own `/health/ready`.
   */
  providers?: Record<string, string>;
  /** The model work, one run per kind. */
  runs: Runs;
  log: Logger;
  metrics: WorkerMetrics;
  catalog: CatalogSettings;
  payloadTtlSeconds: number;
  /** Session threads' worth of jobs side by side, VAE entries per batch, and VAE jobs prefetched. */
  capacity: WorkerCapacity;
  /** Overrides every kind's lock duration (ms); absent: each kind's own (the catalog's). */
  lockMs?: number;
  /** How long {@link RunningWorker.stop} lets jobs in flight finish before handing them back. */
  shutdownGraceMs: number;
  heartbeatSeconds: number;
  /** Port of `/health/*` and `/metrics` (0: none). */
  healthPort: number;
}

/** A started worker. */
export interface RunningWorker {
  /** The BullMQ workers, one per (kind, model) queue it serves. */
  readonly queues: readonly Worker[];
  /** Jobs running now. */
  readonly inFlight: number;
  /**
   * Stops taking jobs, lets those in flight finish for the grace period, hands the rest back to
   * their queues at once (not after their locks lapse), withdraws from the directory and closes
   * its connections. The runtimes are the caller's to close.
   */
  stop(): Promise<void>;
}

/**
 * The worker's composition: one BullMQ worker per (kind, model) it can serve, all running jobs
 * through one job runner; cancels from any API; lifecycle events; heartbeats in the directory;
 * health and metrics. The entry script builds the runtimes and calls this; so do the tests and
 * the benches, which then measure the real worker rather than a copy.
 */
export async function startWorker(deps: WorkerDeps): Promise<RunningWorker> {
  const { log, prefix, redisUrl, workerId } = deps;
  // Every connection reports to one place: an outage is told once, then quietly retried.
  const faults = new RedisFaults(log, redisUrl);
  const redis = faults.watch(createRedis(redisUrl, "command"));
  const store = new PayloadStore(redis, prefix, deps.payloadTtlSeconds);
  const queues = new Queues(redisUrl, prefix);
  const jobs = new JobStore(redis, queues, store, { prefix, catalog: deps.catalog });
  const directory = new WorkerDirectory(redis, prefix, Math.ceil(deps.heartbeatSeconds * 3));
  const handlers = createJobRunner(deps.runs, store, jobs, log, {
    metrics: deps.metrics,
    replies: new ReplySender(redis, prefix, store),
  });

  // Jobs in flight and their lock tokens, to hand them back if a shutdown outlasts its grace.
  const inFlight = new Map<string, { job: Job; token: string }>();
  const tracked = <K extends JobKind>(kind: K) => {
    const handler = handlers[kind];
    return (data: Parameters<typeof handler>[0], job: Job, signal: AbortSignal | undefined) => {
      const key = `${job.queueName}/${job.id}`;
      if (job.token) inFlight.set(key, { job, token: job.token });
      return handler(data, job, signal).finally(() => inFlight.delete(key));
    };
  };

  const workers = deps.models.flatMap((m) =>
    [...m.operations, ...(m.generation ? (["generate"] as const) : [])].map((kind) => {
      const w = openJobWorker({ redisUrl, prefix }, kind, m.id, tracked(kind), {
        name: workerId,
        concurrency: jobCatalog.entries[kind].concurrency(deps.capacity),
        ...(deps.lockMs !== undefined ? { lockMs: deps.lockMs } : {}),
      });
      faults.watch(w);
      attachLifecycle(w, jobs, store, log);
      deps.metrics.observe(w, kind, m.id);
      return w;
    }),
  );
  await Promise.all(workers.map((w) => w.waitUntilReady()));

  // A cancel of a running job reaches every worker; the one running it aborts it.
  const cancels = faults.watch(createRedis(redisUrl, "blocking"));
  cancels.on("message", (_channel: string, jobId: string) => {
    for (const w of workers)
      if (w.cancelJob(jobId, "canceled")) log.info({ jobId, queue: w.name }, "cancel asked");
  });
  await cancels.subscribe(cancelChannel(prefix));

  const startedAt = new Date().toISOString();
  const announce = () =>
    directory
      .announce({
        workerId,
        hostname: hostname(),
        pid: process.pid,
        startedAt,
        models: deps.models,
        ...(deps.providers ? { providers: deps.providers } : {}),
      })
      .catch((err: Error) => log.warn({ err: err.message }, "heartbeat failed"));
  await announce();
  const heartbeat = setInterval(announce, deps.heartbeatSeconds * 1000);

  const health: Server | undefined =
    deps.healthPort > 0
      ? createServer((req, res) => {
          if (req.url === "/metrics") return void deps.metrics.serve(res);
          const ready = req.url === "/health/live" || workers.every((w) => w.isRunning());
          res.writeHead(ready ? 200 : 503, { "content-type": "application/json" });
          res.end(
            JSON.stringify(
              ready
                ? { status: "ok", workerId, ...(deps.providers ? { providers: deps.providers } : {}) }
                : { error: "worker not running", code: "no_workers" },
            ),
          );
        }).listen(deps.healthPort)
      : undefined;
  log.info({ workerId, queues: workers.map((w) => w.name) }, "worker ready");

  let stopped: Promise<void> | undefined;
  const stop = async () => {
    log.info(
      { inFlight: inFlight.size, graceMs: deps.shutdownGraceMs },
      "shutting down: finishing jobs in flight",
    );
    clearInterval(heartbeat);
    health?.close();
    await directory.withdraw(workerId).catch(() => {});
    const closed = Promise.all(workers.map((w) => w.close()));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"late">((r) => {
      timer = setTimeout(() => r("late"), deps.shutdownGraceMs);
    });
    const outcome = await Promise.race([closed, graceOver]);
    clearTimeout(timer);
    if (outcome === "late") {
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
    await queues.close();
    redis.disconnect();
    log.info("worker stopped");
  };
  return {
    queues: workers,
    get inFlight() {
      return inFlight.size;
    },
    stop: () => {
      stopped ??= stop();
      return stopped;
    },
  };
}
