import type { ErrorCode } from "@hybrid/protocol";

/**
 * A code the service answered with: one of the protocol's {@link ErrorCode}s, or
 * `"unexpected_response"` for a non-2xx answer that is not the service's JSON error (a proxy's
 * HTML page, say). Unknown strings are possible with a newer server, so branch, don't assume.
 */
export type HybridErrorCode = ErrorCode | "unexpected_response" | (string & {});

export interface HybridErrorInit {
  status: number;
  code: HybridErrorCode;
  message: string;
  /** Seconds to wait before retrying, from `Retry-After` (429, 503). */
  retryAfter?: number | undefined;
  /** The job the failed request belongs to (a 504 `timeout`'s `job_id`, or `x-job-id`). */
  jobId?: string | undefined;
  /** The parsed JSON error body, or the text of a body that was not JSON. */
  body: unknown;
}

/**
 * The one error the client throws for a non-2xx answer. `code` is stable (branch on it);
 * `message` is the service's sentence for humans. Network failures and aborts are not wrapped:
 * they reject with fetch's own error or the signal's reason.
 */
export class HybridError extends Error {
  /** The HTTP status. */
  readonly status: number;
  readonly code: HybridErrorCode;
  /** Seconds to wait before retrying (`Retry-After`), when the server said. */
  readonly retryAfter: number | undefined;
  /** The job this answer concerns, when the server created one (e.g. a 504 `timeout`). */
  readonly jobId: string | undefined;
  /** The error body as received: `{error, code, details?, job_id?}` for the service's errors. */
  readonly body: unknown;

  constructor(init: HybridErrorInit) {
    super(init.message);
    this.name = "HybridError";
    this.status = init.status;
    this.code = init.code;
    this.retryAfter = init.retryAfter;
    this.jobId = init.jobId;
    this.body = init.body;
  }

  /** `details` of the error body (e.g. `{parameter: "width"}` of an `invalid_parameter`). */
  get details(): unknown {
    return isRecord(this.body) ? this.body.details : undefined;
  }
}

export const isHybridError = (e: unknown): e is HybridError => e instanceof HybridError;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

/** `Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** The HybridError of a non-2xx response (reads its body). */
export async function errorOf(res: Response): Promise<HybridError> {
  const text = await res.text().catch(() => "");
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const retryAfter = parseRetryAfter(res.headers.get("retry-after"));
  const headerJob = res.headers.get("x-job-id") ?? undefined;
  if (isRecord(body) && typeof body.error === "string" && typeof body.code === "string") {
    return new HybridError({
      status: res.status,
      code: body.code,
      message: body.error,
      retryAfter,
      jobId: typeof body.job_id === "string" ? body.job_id : headerJob,
      body,
    });
  }
  const summary = text.trim().slice(0, 200);
  return new HybridError({
    status: res.status,
    code: "unexpected_response",
    message: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${summary ? `: ${summary}` : ""}`,
    retryAfter,
    jobId: headerJob,
    body,
  });
}
