import { createHash, timingSafeEqual } from "node:crypto";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import { AppError, type JobKind } from "@hybrid/protocol";
import { jobCatalog, type Queues, type WorkerDirectory } from "@hybrid/queue";
import { type Express, type RequestHandler, Router } from "express";
import type { Logger } from "pino";
import type { KeyStore } from "./keys.ts";

/** Where the dashboard is mounted. */
export const DASHBOARD_PATH = "/admin/queues";

/** What the dashboard needs beyond the app's other deps. */
export interface DashboardOptions {
  /** The process's queue registry: the board reads the same `Queue` objects the producer uses. */
  queues: Queues;
  /**
   * The key that opens the dashboard (`ADMIN_KEY`). Unset: open while the service has no API
   * keys, off (404) once it has some.
   */
  adminKey?: string | undefined;
  /** Least time between two re-reads of the queue list, in ms. @defaultValue 5000 */
  refreshMs?: number;
  /**
   * Wrong admin keys one client address may present per minute; beyond, every attempt from it
   * gets 429 until the minute is over. @defaultValue {@link ADMIN_FAILURES_PER_MINUTE}
   */
  failuresPerMinute?: number;
}

export interface DashboardDeps extends DashboardOptions {
  directory: Pick<WorkerDirectory, "models">;
  keys: Pick<KeyStore, "enabled" | "refresh">;
  /** Where refused admin keys are logged (the request's logger when absent). */
  logger?: Logger;
}

/** Wrong admin keys per client address per minute before its attempts are refused (429). */
export const ADMIN_FAILURES_PER_MINUTE = 10;

/**
 * Counts wrong admin keys per client address over fixed one-minute windows: the admin key is
 * tried from the network, so guessing it must be slow. In memory, per API process.
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until `client` may try again; 0 when it may now. */
  blockedFor(client: string): number {
    const w = this.windows.get(client);
    if (!w || w.resetAt <= this.now()) return 0;
    return w.count >= this.limit ? Math.ceil((w.resetAt - this.now()) / 1000) : 0;
  }

  /** Records a failure of `client`; returns how many it has had in this window. */
  fail(client: string): number {
    const now = this.now();
    let w = this.windows.get(client);
    if (!w || w.resetAt <= now) {
      // Expired windows go when the map grows, so an address spray cannot grow it for good.
      if (this.windows.size >= 10_000)
        for (const [k, v] of this.windows) if (v.resetAt <= now) this.windows.delete(k);
      w = { count: 0, resetAt: now + this.windowMs };
      this.windows.set(client, w);
    }
    w.count++;
    return w.count;
  }
}

/** Who may open the dashboard, as the logs say at start. */
export type DashboardAccess = "admin-key" | "open" | "off";

/** See {@link DashboardOptions.adminKey}. */
export function dashboardAccess(keysEnabled: boolean, adminKey: string | undefined): DashboardAccess {
  if (adminKey !== undefined) return "admin-key";
  return keysEnabled ? "off" : "open";
}

/** One log line at start saying who can open the dashboard. */
export function logDashboardAccess(logger: Logger, keysEnabled: boolean, adminKey: string | undefined): void {
  const access = dashboardAccess(keysEnabled, adminKey);
  if (access === "open")
    logger.warn(
      { path: DASHBOARD_PATH },
      "QUEUE DASHBOARD OPEN: no API keys, so anyone who can reach the API can read every job. Set ADMIN_KEY to close it.",
    );
  else if (access === "off")
    logger.info({ path: DASHBOARD_PATH }, "queue dashboard off: API keys are on and ADMIN_KEY is unset");
  else logger.info({ path: DASHBOARD_PATH }, "queue dashboard needs ADMIN_KEY");
}

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

/**
 * The secret an Authorization header presents: `Bearer <secret>`, or HTTP Basic with the secret
 * as the password (any user name), which is what a browser can send for a page.
 */
export function presentedSecret(header: string | undefined): string | undefined {
  const match = /^\s*(bearer|basic)\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  if (match[1]!.toLowerCase() === "bearer") return match[2];
  const decoded = Buffer.from(match[2]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon >= 0 ? decoded.slice(colon + 1) : undefined;
}

/**
 * Checks the admin key; hashing both sides first makes the comparison constant-time whatever the
 * lengths. Wrong keys are logged with the client's address, and too many from one address in a
 * minute refuse its attempts (429) until the minute is over.
 */
function adminGate(deps: DashboardDeps): RequestHandler {
  const expected = deps.adminKey === undefined ? undefined : sha256(deps.adminKey);
  const failures = new FailureLimiter(deps.failuresPerMinute ?? ADMIN_FAILURES_PER_MINUTE);
  return async (req, res, next) => {
    await deps.keys.refresh();
    const access = dashboardAccess(deps.keys.enabled, deps.adminKey);
    if (access === "open") return next();
    if (access === "off" || !expected)
      throw new AppError("not_found", `No route for ${req.method} ${req.originalUrl.split("?")[0]}.`);
    const client = req.socket.remoteAddress ?? "unknown";
    const wait = failures.blockedFor(client);
    if (wait > 0)
      throw new AppError("rate_limited", "Too many wrong admin keys from this address; try again later.", {
        retryAfterSeconds: wait,
      });
    const presented = presentedSecret(req.headers.authorization);
    if (presented !== undefined && timingSafeEqual(sha256(presented), expected)) return next();
    if (presented !== undefined) {
      const count = failures.fail(client);
      (deps.logger ?? req.log)?.warn(
        { client, path: req.originalUrl.split("?")[0], failures: count },
        "admin key refused",
      );
    }
    // Basic, so that a browser asks for it; scripts may send the same key as a bearer token.
    res.setHeader("WWW-Authenticate", 'Basic realm="hybrid-inference admin", charset="UTF-8"');
    throw new AppError(
      "unauthorized",
      presented === undefined
        ? "The dashboard needs the admin key: HTTP Basic with ADMIN_KEY as the password, or Authorization: Bearer <ADMIN_KEY>."
        : "The admin key is not valid.",
    );
  };
}

/** The queues the board lists: each live model's job queues, then the webhook queue. */
export async function dashboardQueues(
  directory: Pick<WorkerDirectory, "models">,
): Promise<{ name: string; description: string }[]> {
  const out: { name: string; description: string }[] = [];
  const models = [...(await directory.models()).values()].sort((a, b) => a.id.localeCompare(b.id));
  for (const m of models) {
    const kinds: JobKind[] = [...m.operations, ...(m.generation ? (["generate"] as const) : [])];
    for (const kind of kinds)
      out.push({ name: jobCatalog.queue(kind, m.id), description: `${kind} jobs of ${m.id}` });
  }
  out.push({ name: jobCatalog.webhookQueue, description: "signed webhook deliveries" });
  return out;
}

/** Bull Board's page links Google Fonts; without it the page makes no request outside this server. */
const EXTERNAL_FONTS = /<link[^>]+href="https:\/\/fonts\.googleapis\.com[^"]*"[^>]*>\s*/g;

/**
 * Bull Board at {@link DASHBOARD_PATH}: the job queues of the models live workers serve and the
 * webhook queue, re-read on a request at most every `refreshMs` so models that come and go
 * appear and disappear. Read-only: the service keeps records, event logs, owner indexes and
 * payloads beside each BullMQ job, which retrying, adding or removing jobs from the board would
 * bypass. Mounted before the API-key check, with its own ({@link DashboardOptions.adminKey}).
 */
export function dashboardRoutes(deps: DashboardDeps): Router {
  const refreshMs = deps.refreshMs ?? 5000;
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  const board = createBullBoard({
    queues: [],
    // The lockfile has @bull-board/express 9.10.1 beside @bull-board/api 9.10.2: the same
    // interface, declared twice (the adapter uses none of api's code at run time).
    serverAdapter,
    options: { uiConfig: { boardTitle: "hybrid-inference" } },
  });
  const adapters = new Map<string, BullMQAdapter>();
  let syncedAt = 0;
  let syncing: Promise<void> | undefined;

  const sync = async () => {
    const queues = await dashboardQueues(deps.directory);
    board.replaceQueues(
      queues.map(({ name, description }) => {
        let adapter = adapters.get(name);
        if (!adapter) {
          adapter = new BullMQAdapter(deps.queues.queue(name), { readOnlyMode: true, description });
          adapters.set(name, adapter);
        }
        return adapter;
      }),
    );
    syncedAt = Date.now();
  };
  const refresh: RequestHandler = async (_req, _res, next) => {
    if (Date.now() - syncedAt >= refreshMs) {
      syncing ??= sync().finally(() => {
        syncing = undefined;
      });
      await syncing;
    }
    next();
  };
  const noExternalFonts: RequestHandler = (req, res, next) => {
    if (req.method === "GET" && !/^\/(?:api|static)\//.test(req.path)) {
      const send = res.send.bind(res);
      res.send = (body?: unknown) => send(typeof body === "string" ? body.replace(EXTERNAL_FONTS, "") : body);
    }
    next();
  };

  // The board is an app, not a router: Express restores req/res after a mounted app falls
  // through (to the API's 404). Only requests under its path enter it: entering an app swaps the
  // prototypes of req and res, which costs every other request dearly (their objects turn slow).
  const boardApp = serverAdapter.getRouter() as Express;
  boardApp.disable("x-powered-by");
  const router = Router();
  // Never framed by another page (clickjacking the board); the board's own scripts keep working.
  const noFraming: RequestHandler = (_req, res, next) => {
    res.setHeader("Content-Security-Policy", "frame-ancestors 'none'");
    res.setHeader("X-Frame-Options", "DENY");
    next();
  };
  router.use(DASHBOARD_PATH, noFraming, adminGate(deps), refresh, noExternalFonts, boardApp);
  return router;
}
