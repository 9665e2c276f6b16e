import { z } from "zod";

/** Every error the service can answer with. Stable: clients branch on these strings. */
export const ErrorCode = z.enum([
  "invalid_request",
  "unauthorized",
  "forbidden",
  "invalid_parameter",
  "invalid_shape",
  "invalid_dtype",
  "invalid_body_length",
  "missing_dimensions",
  "empty_body",
  "invalid_image",
  "unsupported_media_type",
  "unsupported_operation",
  "too_large",
  "payload_too_large",
  "unknown_model",
  "not_found",
  "method_not_allowed",
  "overloaded",
  "rate_limited",
  "too_many_queued",
  "job_not_finished",
  "canceled",
  "idempotency_conflict",
  "invalid_webhook",
  "model_loading",
  "no_workers",
  "unavailable",
  "timeout",
  "payload_expired",
  "internal",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** The one code → HTTP status table. Bad input is always 4xx. */
export const errorStatus: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  // A valid key that may not use this model.
  forbidden: 403,
  invalid_parameter: 400,
  invalid_shape: 400,
  invalid_dtype: 400,
  invalid_body_length: 400,
  missing_dimensions: 400,
  empty_body: 400,
  invalid_image: 400,
  unsupported_media_type: 415,
  unsupported_operation: 400,
  too_large: 413,
  payload_too_large: 413,
  unknown_model: 404,
  not_found: 404,
  method_not_allowed: 405,
  // 429, not 503: HF clients re-send a 503 at once and forever; 503 only means "model loading".
  overloaded: 429,
  rate_limited: 429,
  too_many_queued: 429,
  job_not_finished: 409,
  canceled: 409,
  // Same Idempotency-Key, different request.
  idempotency_conflict: 422,
  invalid_webhook: 400,
  model_loading: 503,
  no_workers: 503,
  // A dependency (Redis) is down: retrying is the right move, as HF clients do on 503.
  unavailable: 503,
  timeout: 504,
  payload_expired: 410,
  internal: 500,
};

/**
 * Body of every non-2xx answer. `error` is what HF clients show to the user; `job_id` comes with
 * 504 `timeout` (the job goes on), `estimated_time` with 503 `model_loading` (the HF shape).
 */
export const ErrorBody = z.looseObject({
  error: z.string(),
  code: ErrorCode,
  details: z.unknown().optional(),
  job_id: z.string().optional(),
  estimated_time: z
    .number()
    .optional()
    .meta({ description: "503 `model_loading`: seconds to wait before trying again." }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export interface AppErrorOptions {
  status?: number;
  cause?: unknown;
  details?: unknown;
  /** Seconds a client should wait before trying again (the `Retry-After` header of a 429/503). */
  retryAfterSeconds?: number;
}

/** The single error type of the project: a stable code, an HTTP status and a human sentence. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.status = options.status ?? errorStatus[code];
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  toBody(): ErrorBody {
    return this.details === undefined
      ? { error: this.message, code: this.code }
      : { error: this.message, code: this.code, details: this.details };
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;

/** What a client is told of a job that failed on the server's side (the log has the detail). */
export const INTERNAL_JOB_ERROR = "The job failed on the worker.";

/**
 * What a client may be told of a failure: bad input (a 4xx) as it is; a server-side failure
 * (5xx) as its code and a fixed sentence, since its message may name files, hosts or
 * libraries. The detail goes to the log, with the job id, where the failure happened.
 */
export function publicError(e: AppError): AppError {
  if (e.status < 500) return e;
  const sentence: Partial<Record<ErrorCode, string>> = {
    internal: INTERNAL_JOB_ERROR,
    unavailable: "A dependency of the worker is unavailable; try again shortly.",
  };
  return new AppError(e.code, sentence[e.code] ?? e.message, {
    ...(e.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: e.retryAfterSeconds }),
  });
}

/**
 * A failed job carries its AppError across Redis as BullMQ's `failedReason` string.
 * JSON keeps the code; anything that does not parse (BullMQ's own reasons, e.g. a stalled job;
 * an exception's text) is an internal error, whose text never reaches a client.
 */
export function serializeJobError(e: AppError): string {
  return JSON.stringify({ code: e.code, error: e.message });
}

export function parseJobError(reason: string | undefined): AppError {
  if (reason) {
    try {
      const body = ErrorBody.safeParse(JSON.parse(reason));
      if (body.success)
        return body.data.code === "internal"
          ? new AppError("internal", INTERNAL_JOB_ERROR)
          : new AppError(body.data.code, body.data.error);
    } catch {
      // not ours: fall through
    }
  }
  return new AppError("internal", INTERNAL_JOB_ERROR);
}
