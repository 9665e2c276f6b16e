import { randomUUID } from "node:crypto";
import { lazyChild } from "@hybrid/service";
import type { RequestHandler } from "express";
import type { Logger } from "pino";

declare module "node:http" {
  interface IncomingMessage {
    /** The request's id: its `x-request-id` when the client sent a usable one, else a new UUID. */
    id: string;
    /** A logger bound to the request (`req: {id, method, url}`). */
    log: Logger;
  }
}

/** Probes and the dashboard's own polling would drown the request log. */
const QUIET = /^\/(health\/|admin\/queues\/api\/|metrics$|assets\/)/;

/**
 * One log line per request (`request completed`, or `request errored` for a 5xx other than 503
 * and 504, which are conditions, not bugs), and `req.log`, a logger bound to the request, for
 * the handlers, made only when something logs through it (see `lazyChild`). No header is
 * logged: headers carry bearer keys.
 */
export function requestLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const given = req.headers["x-request-id"];
    const id = typeof given === "string" && given.length <= 200 ? given : randomUUID();
    req.id = id;
    req.log = lazyChild(logger, { req: { id, method: req.method, url: req.url } });
    if (!QUIET.test(req.url)) {
      const started = Date.now();
      const done = () => {
        res.off("finish", done);
        res.off("close", done);
        const failed = res.statusCode >= 500 && res.statusCode < 503;
        const level = failed ? "error" : "info";
        if (!logger.isLevelEnabled(level)) return;
        const fields = {
          res: { status: res.statusCode, jobId: res.getHeader("x-job-id") },
          responseTime: Date.now() - started,
        };
        if (res.statusCode >= 500) req.log[level](fields, "request errored");
        else req.log[level](fields, "request completed");
      };
      res.on("finish", done);
      res.on("close", done);
    }
    next();
  };
}
