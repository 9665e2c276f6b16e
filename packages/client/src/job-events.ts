import { isTerminal, type JobEventName, type JobObject } from "@hybrid/protocol";
import { HybridError } from "./errors.ts";
import { readSse, SseParser } from "./sse.ts";
import { segment, type Transport } from "./transport.ts";

/** One event of a job's stream. */
export interface JobEvent {
  /** The event's id: pass it as `lastEventId` to resume after it. */
  id: string;
  /** `queued`, `started`, `progress`, then one of `succeeded`, `failed`, `canceled`. */
  event: JobEventName;
  /** The job at that event (`job.progress` in `progress` events). */
  job: JobObject;
}

export interface StreamOptions {
  /** Resume after this event id (only later events are sent). */
  lastEventId?: string;
  signal?: AbortSignal;
  /**
   * Reconnections allowed in a row without a new event, when the connection drops or the server
   * ends the stream early (an API instance shutting down): each resumes after the last event seen.
   * @defaultValue 5
   */
  maxReconnects?: number;
}

export interface WaitOptions {
  /** Give up after this many ms: rejects with a `TimeoutError` (the job goes on). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const EVENT_NAMES: ReadonlySet<string> = new Set<JobEventName>([
  "queued",
  "started",
  "progress",
  "succeeded",
  "failed",
  "canceled",
]);
const isJobEvent = (name: string): name is JobEventName => EVENT_NAMES.has(name);
/** The server ends a stream after one of these. */
const TERMINAL: ReadonlySet<JobEventName> = new Set<JobEventName>(["succeeded", "failed", "canceled"]);

/** Worth another try: the network, or a server answer that says "later". */
const transient = (e: unknown): boolean =>
  e instanceof HybridError ? [429, 502, 503, 504].includes(e.status) : e instanceof TypeError;

/** ms before reconnection number `n` (1-based): `Retry-After`, the stream's `retry:`, else exponential. */
function backoff(n: number, retryMs: number | undefined, e?: unknown): number {
  if (e instanceof HybridError && e.retryAfter !== undefined) return Math.min(e.retryAfter * 1000, 30_000);
  return retryMs ?? Math.min(250 * 2 ** (n - 1), 5_000);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

const getJob = (transport: Transport, id: string, signal?: AbortSignal) =>
  transport.json<JobObject>({ method: "GET", path: `/v1/jobs/${segment(id)}`, headers: {} }, signal);

/**
 * A job's events from `GET /v1/jobs/{id}/events`, ending after the terminal one. Reconnects
 * after the last event seen when the stream breaks off early, so none is missed or repeated.
 */
export async function* followJobEvents(
  transport: Transport,
  id: string,
  options: StreamOptions = {},
): AsyncGenerator<JobEvent, void, undefined> {
  const { signal } = options;
  const maxReconnects = options.maxReconnects ?? 5;
  let last = options.lastEventId;
  let failures = 0;
  let retryMs: number | undefined;
  for (;;) {
    let received = 0;
    const parser = new SseParser(last);
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (last !== undefined) headers["Last-Event-ID"] = last;
      const res = await transport.send(
        { method: "GET", path: `/v1/jobs/${segment(id)}/events`, headers },
        signal,
      );
      if (!res.body) throw new TypeError("The event stream has no body.");
      for await (const message of readSse(res.body, parser)) {
        if (!isJobEvent(message.event)) continue;
        const job = JSON.parse(message.data) as JobObject;
        last = message.id;
        received++;
        failures = 0;
        yield { id: message.id ?? "", event: message.event, job };
        if (TERMINAL.has(message.event)) return;
      }
    } catch (e) {
      retryMs = parser.retry ?? retryMs;
      if (signal?.aborted) throw signal.reason;
      if (!transient(e) || failures >= maxReconnects) throw e;
      failures++;
      await sleep(backoff(failures, retryMs, e), signal);
      continue;
    }
    retryMs = parser.retry ?? retryMs;
    // The stream ended before a terminal event: the API instance went away, or the caller
    // resumed after the terminal event (then the job has ended and nothing more will come).
    if (received === 0) {
      const job = await getJob(transport, id, signal);
      if (isTerminal(job.status)) return;
      if (failures >= maxReconnects)
        throw new Error(`The event stream of job ${id} keeps ending before the job does.`);
      failures++;
      await sleep(backoff(failures, retryMs), signal);
    }
  }
}

/** The job once it has ended, following its events; rejects on abort or after `timeoutMs`. */
export async function waitForJob(
  transport: Transport,
  id: string,
  options: WaitOptions = {},
): Promise<JobObject> {
  const signals: AbortSignal[] = [];
  if (options.signal) signals.push(options.signal);
  if (options.timeoutMs !== undefined) signals.push(AbortSignal.timeout(options.timeoutMs));
  const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
  let final: JobObject | undefined;
  for await (const e of followJobEvents(transport, id, signal ? { signal } : {}))
    if (TERMINAL.has(e.event)) final = e.job;
  return final ?? getJob(transport, id, signal);
}
