import { AppError, isTerminal, type JobEventName, type JobView, jobObjectOf } from "@hybrid/protocol";
import type { JobEvent, JobEventHub, JobMeta, JobStore } from "@hybrid/queue";
import type { Request, Response } from "express";

const TERMINAL: ReadonlySet<JobEventName> = new Set(["succeeded", "failed", "canceled"]);

/** Stream ids are `ms-n`: compare them as numbers, not strings. */
export function compareSeq(a: string, b: string): number {
  const [am = 0n, an = 0n] = a.split("-").map((x) => BigInt(x));
  const [bm = 0n, bn = 0n] = b.split("-").map((x) => BigInt(x));
  return am === bm ? Number(an - bn) : am < bm ? -1 : 1;
}

const SEQ = /^\d{1,20}-\d{1,20}$/;

/**
 * The id of the one event a stream makes up for a job that logged none (a plain sync job): it
 * sorts before every real event, so a reconnect with it as Last-Event-ID misses nothing.
 */
const SNAPSHOT_SEQ = "0-1";

/** The event a job's status stands for, as the worker would have logged it. */
const eventOf = (job: JobView): JobEventName => (job.status === "running" ? "started" : job.status);

export interface SseOptions {
  /** ms between keep-alive comments (proxies close silent connections). */
  keepAliveMs: number;
  /**
   * A job that ended without its terminal event in the log (the process that should have
   * written it died between BullMQ recording the end and the write) gets one written by the
   * stream after this many ms, so readers are not left hanging.
   */
  staleMs: number;
  /** Aborts when the API shuts down: streams end, and clients reconnect with Last-Event-ID. */
  stopping?: AbortSignal;
  /** The open streams of each key in this process (`MAX_SSE_STREAMS_PER_KEY`). */
  slots: StreamSlots;
}

/**
 * Counts the event streams each owner (an API key, or every anonymous caller together) holds
 * open in this process, and refuses one beyond the limit: each stream holds a listener, a timer
 * and a connection until its job ends, which may be never for a job that is never picked up.
 */
export class StreamSlots {
  private readonly open = new Map<string, number>();

  /** @param max - streams one owner may hold open at once. */
  constructor(readonly max: number) {}

  /** Takes a slot for `owner` or throws 429 `rate_limited`; the returned function gives it back (once). */
  take(owner: string): () => void {
    const n = this.open.get(owner) ?? 0;
    if (n >= this.max)
      throw new AppError(
        "rate_limited",
        `This API key already has ${n} event streams open (its limit is ${this.max}); close one first.`,
        { retryAfterSeconds: 1 },
      );
    this.open.set(owner, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.open.get(owner) ?? 1) - 1;
      if (left > 0) this.open.set(owner, left);
      else this.open.delete(owner);
    };
  }

  /** Streams open now, over all owners. */
  get size(): number {
    let n = 0;
    for (const v of this.open.values()) n += v;
    return n;
  }
}

/**
 * `GET /v1/jobs/{id}/events`: replays the job's event log after `Last-Event-ID` (or from the
 * start), then follows new events live, and ends after the terminal one. A client may hang up
 * during any await here: each is followed by a check, so nothing (listener, keep-alive timer)
 * outlives the connection.
 */
export async function streamJobEvents(
  req: Request,
  res: Response,
  meta: JobMeta,
  deps: { jobs: JobStore; hub: JobEventHub },
  opts: SseOptions,
): Promise<void> {
  const header = req.headers["last-event-id"] ?? req.query.last_event_id;
  let last = typeof header === "string" && SEQ.test(header.trim()) ? header.trim() : undefined;
  let ended = false;
  let live = false;
  let timer: NodeJS.Timeout | undefined;
  let unlisten: (() => void) | undefined;
  const early: JobEvent[] = [];

  function end() {
    if (ended) return;
    ended = true;
    clearInterval(timer);
    unlisten?.();
    opts.stopping?.removeEventListener("abort", end);
    res.end();
  }
  // Before any await: a hang-up from here on ends the stream; one before it is seen below.
  res.once("close", end);
  opts.stopping?.addEventListener("abort", end);
  if (res.destroyed || opts.stopping?.aborted) return end();

  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    Connection: "keep-alive",
    "X-Accel-Buffering": "no",
  });
  res.flushHeaders();

  const send = (e: JobEvent) => {
    if (ended) return;
    // Already seen (before Last-Event-ID): not sent again, but a terminal one still ends the
    // stream, so a client reconnecting after the end is not kept waiting for nothing.
    if (!last || compareSeq(e.seq, last) > 0) {
      res.write(`id: ${e.seq}\nevent: ${e.event}\ndata: ${JSON.stringify(jobObjectOf(e.job))}\n\n`);
      last = e.seq;
    }
    if (TERMINAL.has(e.event)) end();
  };
  // Listen before reading the log, so nothing published in between is missed.
  const off = await deps.hub.listen(meta.id, (e) => (live ? send(e) : early.push(e)));
  if (ended) return off();
  unlisten = off;
  timer = setInterval(() => {
    res.write(": keep-alive\n\n");
    void checkStale();
  }, opts.keepAliveMs);
  async function checkStale() {
    const job = await deps.jobs.views.describe(meta.id).catch(() => null);
    if (!job || ended || !isTerminal(job.status)) return;
    const at = job.completed_at ? Date.parse(job.completed_at) : 0;
    if (Date.now() - at < opts.staleMs) return;
    const log = await deps.jobs.events.read(meta.id);
    if (log.some((e) => TERMINAL.has(e.event))) {
      for (const e of log) send(e);
      return;
    }
    await deps.jobs.events.publish({ ...meta, logged: true }, job.status as JobEventName, job);
  }

  // A job nobody followed logs nothing: from now on it does, and the stream starts with the job
  // as it is (its end comes live, or is this snapshot).
  if (!meta.logged) await deps.jobs.records.follow(meta);
  if (ended) return;
  // The whole log: events up to Last-Event-ID are skipped by send(), but a terminal one ends the stream.
  const log = await deps.jobs.events.read(meta.id);
  if (ended) return;
  for (const e of log) send(e);
  if (!meta.logged && log.length === 0) {
    const now = await deps.jobs.views.describe(meta.id);
    if (now) send({ seq: SNAPSHOT_SEQ, event: eventOf(now), job: now });
  }
  live = true;
  for (const e of early) send(e);
  early.length = 0;
}
