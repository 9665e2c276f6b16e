import { AppError, type HealthLive, type HealthReady } from "@hybrid/protocol";
import type { RedisClient, WorkerDirectory } from "@hybrid/queue";
import { Router } from "express";

export interface HealthRouteDeps {
  redis: RedisClient;
  directory: WorkerDirectory;
}

/**
 * The probes: `GET /health/live` (the process is up) and `GET /health/ready` (Redis answers and
 * a live worker serves a model; else 503). Mounted before auth.
 */
export function healthRoutes(deps: HealthRouteDeps): Router {
  const router = Router();
  router.get("/health/live", (_req, res) => {
    const live: HealthLive = { status: "ok" };
    res.json(live);
  });

  router.get("/health/ready", async (_req, res) => {
    const redisOk = await deps.redis.ping().then(
      (r) => r === "PONG",
      () => false,
    );
    if (!redisOk) throw new AppError("unavailable", "Redis is not reachable.");
    const workers = await deps.directory.list(true);
    const models = new Set(workers.flatMap((w) => w.models.map((m) => m.id)));
    if (workers.length === 0 || models.size === 0)
      throw new AppError("no_workers", "No worker is serving any model yet.");
    // What each model runs on across workers: a GPU worker that fell back to CPU shows up here.
    const providers = new Map<string, Set<string>>();
    for (const w of workers)
      for (const [model, provider] of Object.entries(w.providers ?? {}))
        providers.set(model, (providers.get(model) ?? new Set()).add(provider));
    const ready: HealthReady = {
      status: "ready",
      workers: workers.length,
      models: [...models].sort(),
      providers: Object.fromEntries(
        [...providers.keys()].sort().map((m) => [m, [...providers.get(m)!].sort()]),
      ),
    };
    res.json(ready);
  });
  return router;
}
