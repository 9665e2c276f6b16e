import type { JobEventHub, JobStore, RedisClient, WorkerDirectory } from "@hybrid/queue";
import express, { type Express, type RequestHandler } from "express";
import type { Logger } from "pino";
import { authenticate } from "./auth.ts";
import { DASHBOARD_PATH, type DashboardOptions, dashboardAccess, dashboardRoutes } from "./dashboard.ts";
import { errorHandler, notFound } from "./errors.ts";
import { type AllowedHost, requestGuard } from "./exposure.ts";
import type { SubmitDeps } from "./job-submit.ts";
import type { KeyStore } from "./keys.ts";
import type { ApiMetrics } from "./metrics.ts";
import { requestLog } from "./request-log.ts";
import { docsRoutes } from "./routes/docs.ts";
import { type GenerateRouteDeps, generateRoutes } from "./routes/generate.ts";
import { healthRoutes } from "./routes/health.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { modelRoutes } from "./routes/models.ts";
import { vaeRoutes } from "./routes/vae.ts";
import { defaultWebDir, webRoutes } from "./routes/web.ts";
import type { SseOptions } from "./sse.ts";

export interface AppDeps extends GenerateRouteDeps, SubmitDeps {
  redis: RedisClient;
  jobs: JobStore;
  hub: JobEventHub;
  directory: WorkerDirectory;
  keys: KeyStore;
  logger: Logger;
  sse: SseOptions;
  /** Prometheus metrics (`GET /metrics`, before auth and logging); null or absent: none. */
  metrics?: ApiMetrics | null;
  /** The queue dashboard at /admin/queues (before auth, with its own admin key); absent: none. */
  dashboard?: DashboardOptions | null;
  /**
   * The folder of the playground's build served at `/` (before auth). Absent: `@hybrid/web`'s
   * `dist/`; null: no playground.
   */
  webDir?: string | null;
  /**
   * The `Host` names the API answers (`ALLOWED_HOSTS`, see exposure.ts); null or absent: any.
   */
  allowedHosts?: AllowedHost[] | null;
}

/**
 * A router that only answers GET and HEAD (and OPTIONS, which Express answers for its routes):
 * every other request (all inference calls are POSTs) goes straight on instead of being matched
 * against each of its routes — the hot path's share of Express' routing.
 */
const readOnly =
  (router: RequestHandler): RequestHandler =>
  (req, res, next) =>
    req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS"
      ? router(req, res, next)
      : next();

/**
 * A router entered only by requests under `prefix`: every other request goes straight on
 * instead of walking its routes (each router entered costs every request that passes it).
 */
const under =
  (prefix: string, router: RequestHandler): RequestHandler =>
  (req, res, next) =>
    req.path === prefix || req.path.startsWith(`${prefix}/`) ? router(req, res, next) : next();

/** Builds the HTTP app (no listen): health, then auth, then the inference and job routes. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("query parser", "simple");
  // When the request arrived: the start of its `Server-Timing` breakdown.
  app.use((_req, res, next) => {
    res.locals.arrivedAt = performance.now();
    next();
  });
  if (deps.metrics) app.use(deps.metrics.router());
  app.use(requestLog(deps.logger));

  app.use(requestGuard({ allowedHosts: deps.allowedHosts ?? null, keysEnabled: () => deps.keys.enabled }));
  app.use(readOnly(healthRoutes(deps)));

  // Public docs and playground, and the dashboard with its own key: all before the API-key check.
  app.use(readOnly(docsRoutes()));
  const webDir = deps.webDir === undefined ? defaultWebDir() : deps.webDir;
  if (webDir)
    app.use(
      readOnly(
        webRoutes({
          dir: webDir,
          config: async () => {
            await deps.keys.refresh();
            const dashboard = deps.dashboard
              ? dashboardAccess(deps.keys.enabled, deps.dashboard.adminKey) !== "off"
              : false;
            return { api_keys: deps.keys.enabled, dashboard, docs: true };
          },
        }),
      ),
    );
  if (deps.dashboard)
    app.use(
      under(
        DASHBOARD_PATH,
        dashboardRoutes({
          ...deps.dashboard,
          directory: deps.directory,
          keys: deps.keys,
          logger: deps.logger,
        }),
      ),
    );
  app.use(authenticate(deps.keys));

  app.use(readOnly(modelRoutes(deps)));
  app.use(vaeRoutes(deps));
  app.use(generateRoutes(deps));
  app.use(jobRoutes(deps));

  app.use(notFound);
  app.use(errorHandler);
  return app;
}
