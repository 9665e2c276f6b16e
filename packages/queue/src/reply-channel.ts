import { randomUUID } from "node:crypto";
import { AppError, JobResult, parseJobError, type ReplyTo } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import { replyChannel } from "./names.ts";
import type { PayloadStore } from "./payload-store.ts";

/**
 * The reply channel: both ends of an answer a request waits for (a sync call, `Prefer: wait=N`,
 * an idempotent retry). The API puts its reply address in the job data (`reply`: {@link ReplyTo});
 * the worker that runs the job publishes the outcome on that API's channel
 * (`<prefix>:reply:<api>`) before BullMQ marks the job finished, so the waiter answers without
 * BullMQ's completion round trips, and a small answer crosses Redis once instead of being stored
 * and fetched. BullMQ's own state is only the fallback, read on a slow timer, for the rare reply
 * that never arrives (a subscriber reconnecting, a job failed by the stalled-job check).
 *
 * Who stores and who deletes the answer bytes, in every case (`keep`: the answer must stay
 * fetchable after it is sent, i.e. `wait=N` or an `Idempotency-Key`; "small": at most
 * `inlineMaxBytes`; payload keys expire after `PAYLOAD_TTL_SECONDS` whatever happens):
 *
 * | keep | size  | waiter                   | worker                                  | API                                   |
 * |------|-------|--------------------------|-----------------------------------------|---------------------------------------|
 * | no   | small | waiting                  | publishes the bytes, stores nothing     | answers from the reply; deletes none  |
 * | no   | small | gone (504'd), API alive  | publishes the bytes, stores nothing     | listener stores them for `/result`    |
 * | no   | small | API gone (no subscriber) | stores them (nobody received the reply) | —                                     |
 * | no   | large | waiting                  | stores them, publishes a notice         | fetches, answers, deletes them        |
 * | no   | large | gone, or API gone        | stores them, publishes a notice         | — (`/result` fetches them)            |
 * | yes  | small | any                      | stores them, then publishes the bytes   | answers from the reply; keeps them    |
 * | yes  | large | any                      | stores them, publishes a notice         | fetches and answers; keeps them       |
 * | any  | —     | the job failed for good  | publishes the error                     | answers the job's error               |
 *
 * A job result marked `inline` (first row) has its bytes nowhere but in the reply; every other
 * result names a stored payload.
 */

/**
 * On a cluster, replies use sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7): classic PUBLISH
 * copies every message to every node, which for answer bytes would multiply the traffic by the
 * cluster's size; a shard channel lives on the one node that owns its slot. The subscriber
 * connection must be created with `shardedSubscribers: true`.
 */
const sharded = (redis: RedisClient) => redis.isCluster;

/**
 * Answers up to this size travel in the reply itself. Redis drops a subscriber whose unread
 * pub/sub output passes 32 MB (8 MB for a minute), so large answers (videos) are stored and
 * fetched instead.
 */
export const DEFAULT_INLINE_MAX_BYTES = 4 * 1024 * 1024;

/** A reply's JSON head: the job, and its result (with whether the bytes were stored) or its error. */
type ReplyHead = { id: string } & ({ result: JobResult; stored: boolean } | { error: string });

/**
 * How a reply travels. The answer bytes are most of it (a 256×256 image is 196 KB), and ioredis
 * copies every argument into one buffer of its own, so the framing must not copy them again:
 * - on one Redis, the JSON head is the last part of the channel's name
 *   (`<prefix>:reply:<api>:<head>`, which the API's pattern subscription matches) and the message
 *   is the bytes themselves;
 * - on a cluster, sharded pub/sub has no patterns: the message is the head, a newline, then the
 *   bytes (one copy more).
 */
function encodeReply(head: ReplyHead, bytes?: Uint8Array): Buffer {
  const json = Buffer.from(`${JSON.stringify(head)}\n`);
  return bytes ? Buffer.concat([json, bytes]) : json;
}

/** Splits a cluster reply (head, newline, bytes) into its head and bytes. */
function splitReply(message: Buffer): { head: Buffer; bytes?: Buffer } | null {
  const nl = message.indexOf(0x0a);
  if (nl < 0) return null;
  return {
    head: message.subarray(0, nl),
    ...(nl + 1 < message.length ? { bytes: message.subarray(nl + 1) } : {}),
  };
}

/** A pattern matching exactly the names that start with `prefix` (glob characters escaped). */
const globPrefix = (prefix: string) => `${prefix.replace(/[\\*?[\]]/g, "\\$&")}*`;

/** What a waiter gets: the job's error, or its result with the bytes when they came along. */
export type Reply = { ok: true; result: JobResult; bytes?: Buffer } | { ok: false; error: AppError };

function decodeReply(
  headJson: Buffer,
  bytes: Buffer | undefined,
): { id: string; reply: Reply; storedBytes: boolean } | null {
  let head: { id?: unknown; result?: unknown; stored?: unknown; error?: unknown };
  try {
    head = JSON.parse(headJson.toString());
  } catch {
    return null;
  }
  if (typeof head.id !== "string") return null;
  if (typeof head.error === "string")
    return { id: head.id, reply: { ok: false, error: parseJobError(head.error) }, storedBytes: true };
  const result = JobResult.safeParse(head.result);
  if (!result.success) return null;
  // An answer of no bytes that was not stored traveled too, as an empty message.
  if (!bytes && head.stored !== true && result.data.bytes === 0) bytes = Buffer.alloc(0);
  return {
    id: head.id,
    reply: { ok: true, result: result.data, ...(bytes ? { bytes } : {}) },
    storedBytes: head.stored === true,
  };
}

/** The worker's end: delivers each outcome of a job a request waits for. */
export class ReplySender {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly store: PayloadStore,
    private readonly inlineMaxBytes = DEFAULT_INLINE_MAX_BYTES,
  ) {}

  /**
   * Delivers `bytes` as the answer of `jobId` (`result.result` is the key it has, or gets, in the
   * payload store), as the table above says. Returns the result BullMQ should keep: marked
   * `inline` when the bytes went only to the waiting API. Without `reply` (nobody waits) the
   * bytes are stored.
   */
  async deliver(
    jobId: string,
    reply: ReplyTo | undefined,
    result: JobResult,
    bytes: Uint8Array,
  ): Promise<JobResult> {
    const small = bytes.byteLength <= this.inlineMaxBytes;
    if (reply && small && !reply.keep) {
      const receivers = await this.send(reply.api, { id: jobId, result, stored: false }, bytes).catch(
        () => 0,
      );
      if (receivers > 0) return { ...result, inline: true };
    }
    await this.store.putAt(result.result, bytes);
    if (reply)
      await this.send(
        reply.api,
        { id: jobId, result, stored: true },
        reply.keep && small ? bytes : undefined,
      ).catch(() => 0);
    return result;
  }

  /** Tells the waiting API that the job failed for good (`error`: a serialized job error). */
  async fail(jobId: string, reply: ReplyTo | undefined, error: string): Promise<void> {
    if (reply) await this.send(reply.api, { id: jobId, error }).catch(() => 0);
  }

  /** Publishes a reply to an API; resolves to how many subscribers got it. */
  private async send(api: string, head: ReplyHead, bytes?: Uint8Array): Promise<number> {
    const channel = replyChannel(this.prefix, api);
    if (sharded(this.redis)) return Number(await this.redis.spublish(channel, encodeReply(head, bytes)));
    const body = bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : Buffer.alloc(0);
    return Number(await this.redis.publish(`${channel}:${JSON.stringify(head)}`, body));
  }
}

/** Where a job stands, as the fallback reads it from BullMQ: null while it is unfinished. */
export type JobOutcome = { ok: true; result: JobResult } | { ok: false; error: AppError } | null;

export interface AwaitOptions {
  /** Then the wait fails with `timeout` (504, naming the job; the job itself goes on). */
  timeoutMs: number;
  /** Reads the job's outcome from BullMQ: the fallback for a reply that never comes. */
  check: () => Promise<JobOutcome>;
  /**
   * ms before the first check: 0 for a job that may have finished before anyone listened (an
   * idempotent retry); a new job's reply is all but certain, so the check waits a while.
   * Checks then back off, doubling up to {@link MAX_CHECK_MS}.
   */
  firstCheckMs: number;
}

const MAX_CHECK_MS = 8000;

/** A job's answer as a waiter gets it: the result, and its bytes unless they must be fetched. */
export interface Answer {
  result: JobResult;
  /** Absent: the bytes are in the payload store under `result.result`. */
  bytes?: Buffer;
}

/** One request's wait for one job's reply, registered before the job is enqueued. */
export interface PendingReply {
  /**
   * Resolves with the answer, or rejects with the job's error or `timeout`. Everything it set up
   * (listener, timers) is gone once it settles, and after {@link stop}.
   */
  answer(opts: AwaitOptions): Promise<Answer>;
  /** Stops waiting: nothing is left listening or scheduled for this request. */
  stop(): void;
}

type Waiter = (r: Reply) => void;

/**
 * The API's end: one subscription to this process's reply channel serves every request here
 * that waits. Bytes the worker did not store that no waiter takes any more are stored here (row
 * two of the table).
 */
export class ReplyListener {
  /** This process's reply address, put in the data of the jobs it waits for. */
  readonly id = randomUUID().replaceAll("-", "").slice(0, 16);
  /** Waiters by job id (an idempotent retry may wait beside the request that made the job). */
  private readonly waiting = new Map<string, Set<Waiter>>();
  private readonly ready: Promise<unknown>;

  /**
   * `subscriber` becomes a subscriber connection: give the listener one of its own (on a
   * cluster, created with `shardedSubscribers: true`).
   */
  constructor(
    private readonly subscriber: RedisClient,
    prefix: string,
    private readonly store: PayloadStore,
    private readonly onError: (err: Error) => void = () => {},
  ) {
    const channel = replyChannel(prefix, this.id);
    const take = (head: Buffer, bytes: Buffer | undefined) => {
      const decoded = decodeReply(head, bytes);
      if (!decoded) return;
      const { id, reply, storedBytes } = decoded;
      const waiters = [...(this.waiting.get(id) ?? [])];
      if (reply.ok && reply.bytes && !storedBytes && waiters.length === 0)
        this.store.putAt(reply.result.result, reply.bytes).catch((e: Error) => this.onError(e));
      for (const w of waiters) w(reply);
    };
    const named = Buffer.from(`${channel}:`);
    if (sharded(subscriber)) {
      subscriber.on("smessageBuffer", (from: Buffer, message: Buffer) => {
        if (from.toString() !== channel) return;
        const parts = splitReply(message);
        if (parts) take(parts.head, parts.bytes);
      });
      this.ready = subscriber.ssubscribe(channel);
    } else {
      subscriber.on("pmessageBuffer", (_pattern: Buffer, from: Buffer, message: Buffer) => {
        if (from.length <= named.length || !from.subarray(0, named.length).equals(named)) return;
        take(from.subarray(named.length), message.length > 0 ? message : undefined);
      });
      this.ready = subscriber.psubscribe(globPrefix(`${channel}:`));
    }
    this.ready.catch(() => {});
  }

  /** Resolves when it is subscribed (a reply sent before then would be missed). */
  async subscribed(): Promise<void> {
    await this.ready;
  }

  /** How many requests wait now (a gauge; 0 once every request is answered). */
  get pending(): number {
    let n = 0;
    for (const set of this.waiting.values()) n += set.size;
    return n;
  }

  /** Starts listening for the reply of `jobId`: call it before the job can run. */
  expect(jobId: string): PendingReply {
    const replies: Reply[] = [];
    let wake: (() => void) | undefined;
    const waiter: Waiter = (r) => {
      replies.push(r);
      wake?.();
    };
    const set = this.waiting.get(jobId) ?? new Set<Waiter>();
    this.waiting.set(jobId, set);
    set.add(waiter);
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      clearTimeout(timer);
      timer = undefined;
      wake = undefined;
      set.delete(waiter);
      if (set.size === 0 && this.waiting.get(jobId) === set) this.waiting.delete(jobId);
    };
    const answer = (opts: AwaitOptions) =>
      new Promise<Answer>((resolve, reject) => {
        const settle = (r: Reply) => {
          stop();
          if (r.ok) resolve({ result: r.result, ...(r.bytes ? { bytes: r.bytes } : {}) });
          else reject(r.error);
        };
        wake = () => settle(replies[0]!);
        if (replies.length > 0) return wake();
        // One timer at a time, for whichever comes first: the next check of BullMQ's record (the
        // fallback, backing off) or the deadline.
        const deadline = performance.now() + opts.timeoutMs;
        let nextCheck = performance.now() + opts.firstCheckMs;
        let gapMs = Math.max(500, opts.firstCheckMs);
        let inlineSeen = false;
        const schedule = () => {
          const at = Math.min(nextCheck, deadline);
          timer = setTimeout(tick, Math.max(0, at - performance.now()));
        };
        const tick = async () => {
          timer = undefined;
          if (performance.now() >= deadline - 1) {
            stop();
            return reject(
              new AppError(
                "timeout",
                `The job did not finish within ${opts.timeoutMs} ms; it goes on: GET /v1/jobs/${jobId} follows it.`,
                { details: { job_id: jobId } },
              ),
            );
          }
          const outcome = await opts.check().catch(() => null);
          if (!wake) return;
          if (outcome && !outcome.ok) return settle(outcome);
          if (outcome?.ok && !outcome.result.inline) return settle(outcome);
          // Completed with bytes that only the reply carried: the reply may trail BullMQ's
          // record by a moment; if it still has not come by the next check, it was lost.
          if (outcome?.ok && inlineSeen)
            return settle({
              ok: false,
              error: new AppError("payload_expired", "The job's answer was lost on its way to this server."),
            });
          inlineSeen = outcome?.ok === true;
          nextCheck = performance.now() + gapMs;
          gapMs = Math.min(MAX_CHECK_MS, gapMs * 2);
          schedule();
        };
        schedule();
      });
    return { answer, stop };
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
