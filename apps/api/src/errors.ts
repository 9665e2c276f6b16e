import { AppError, type ErrorBody, isAppError } from "@hybrid/protocol";
import type { ErrorRequestHandler, RequestHandler } from "express";

/** What a client reads of an unexpected failure of the API itself. */
const INTERNAL_ERROR = "Internal server error.";

/** Unknown routes answer JSON like every other error. */
export const notFound: RequestHandler = (req, _res, next) => {
  next(new AppError("not_found", `No route for ${req.method} ${req.path}.`));
};

/** Body-parser's errors carry a `type`; turn the ones caused by the client into 4xx codes. */
function fromBodyParser(e: {
  type?: string;
  status?: number;
  limit?: number;
  message?: string;
}): AppError | undefined {
  switch (e.type) {
    case "entity.too.large":
      return new AppError("payload_too_large", `The body is larger than the ${e.limit} bytes allowed.`);
    case "request.aborted":
    case "request.size.invalid":
    case "stream.encoding.set":
    case "encoding.unsupported":
    case "charset.unsupported":
    case "entity.parse.failed":
    case "entity.verify.failed":
      return new AppError("invalid_request", `The request body could not be read: ${e.message}`);
    default:
      return undefined;
  }
}

/** Seconds a 503 for a full Redis asks clients to wait: memory frees as results are read or expire. */
export const MEMORY_RETRY_AFTER_SECONDS = 5;

/** ioredis gives up on a command when Redis is unreachable: that is an outage, not a bug. */
function fromRedis(e: { name?: string; message?: string; code?: string }): AppError | undefined {
  const m = e.message ?? "";
  if (
    e.name === "MaxRetriesPerRequestError" ||
    /Connection is closed|ECONNREFUSED|Stream isn't writeable/.test(m) ||
    e.code === "ECONNREFUSED"
  ) {
    return new AppError("unavailable", "The queue is unavailable; try again shortly.", { cause: e });
  }
  // Redis at its maxmemory (`noeviction`) refuses writes: the admission's high-water mark should
  // come first, but a burst between two samples (or another process's writes) can get there.
  if (/\bOOM command not allowed\b/.test(m))
    return new AppError("overloaded", "The service is out of memory for new work; try again later.", {
      status: 503,
      retryAfterSeconds: MEMORY_RETRY_AFTER_SECONDS,
      cause: e,
    });
  return undefined;
}

/** The one error middleware: AppErrors keep their status and code; anything else is a logged 500. */
export const errorHandler: ErrorRequestHandler = (err, req, res, _next) => {
  const e = isAppError(err)
    ? err
    : (fromBodyParser(err) ?? fromRedis(err) ?? new AppError("internal", INTERNAL_ERROR, { cause: err }));
  // The detail (a stack, a file path, a library's message) goes to the log with the job id; the
  // client gets the code and a fixed sentence.
  if (e.code === "internal") req.log?.error({ err, jobId: res.getHeader("x-job-id") }, "request failed");
  else if (e.code === "unavailable") req.log?.warn({ err: (err as Error).message }, "redis unavailable");
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  // An internal error's details (a job's raw failure) stay out of the body.
  const body: ErrorBody = e.code === "internal" ? { error: e.message, code: "internal" } : e.toBody();
  // Fields clients read at the top level: the job of a 504, the wait of a loading model (HF's shape).
  const details = e.details as { job_id?: unknown; estimated_time?: unknown } | undefined;
  if (typeof details?.job_id === "string") body.job_id = details.job_id;
  if (typeof details?.estimated_time === "number") body.estimated_time = details.estimated_time;
  if (e.status === 429 || e.status === 503) res.setHeader("Retry-After", String(e.retryAfterSeconds ?? 1));
  res.status(e.status).json(body);
};
