import { randomUUID } from "node:crypto";
import { JobResult, type ReplyTo } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import { replyChannel } from "./names.ts";
import type { PayloadStore } from "./payload-store.ts";

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

/**
 * A reply: a JSON head (the job id, its result, whether the worker stored the bytes), a newline,
 * then the answer bytes when they travel with it.
 */
function encodeReply(jobId: string, result: JobResult, stored: boolean, bytes?: Uint8Array): Buffer {
  const head = Buffer.from(`${JSON.stringify({ id: jobId, result, stored })}\n`);
  if (!bytes) return head;
  return Buffer.concat([head, bytes]);
}

interface DecodedReply {
  id: string;
  result: JobResult;
  stored: boolean;
  bytes?: Buffer;
}

function decodeReply(message: Buffer): DecodedReply | null {
  const nl = message.indexOf(0x0a);
  if (nl < 0) return null;
  let head: { id?: unknown; result?: unknown; stored?: unknown };
  try {
    head = JSON.parse(message.subarray(0, nl).toString());
  } catch {
    return null;
  }
  const result = JobResult.safeParse(head.result);
  if (typeof head.id !== "string" || !result.success) return null;
  return {
    id: head.id,
    result: result.data,
    stored: head.stored === true,
    ...(nl + 1 < message.length ? { bytes: message.subarray(nl + 1) } : {}),
  };
}

/**
 * A worker's side. The answer of a job a request waits for goes straight to that request's API
 * process on pub/sub, before BullMQ marks the job completed: the waiter answers without BullMQ's
 * completion round trips, and a small answer makes one trip through Redis instead of a store and
 * a fetch. When nobody receives it (that API is gone), the answer is stored as for any job.
 */
export class CompletionPublisher {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly store: PayloadStore,
    private readonly inlineMaxBytes = DEFAULT_INLINE_MAX_BYTES,
  ) {}

  /**
   * Delivers `bytes` as the answer of `jobId` (`result.result` is the key it has, or gets, in
   * the payload store). Returns the result BullMQ should keep: `inline` when the bytes went only
   * to the waiting API. An answer that must stay fetchable (`reply.keep`) is stored first, so a
   * crash of that API cannot lose it; its bytes still travel with the reply (no fetch).
   */
  async deliver(
    jobId: string,
    reply: ReplyTo | undefined,
    result: JobResult,
    bytes: Uint8Array,
  ): Promise<JobResult> {
    const small = bytes.byteLength <= this.inlineMaxBytes;
    if (reply && small && !reply.keep) {
      const receivers = await this.send(reply.api, encodeReply(jobId, result, false, bytes)).catch(() => 0);
      if (receivers > 0) return { ...result, inline: true };
    }
    await this.store.putAt(result.result, bytes);
    // Stored: the reply still saves the waiter BullMQ's completion round trips (and, when small
    // enough, the fetch).
    if (reply)
      this.send(reply.api, encodeReply(jobId, result, true, reply.keep && small ? bytes : undefined)).catch(
        () => {},
      );
    return result;
  }

  /** Publishes on an API's reply channel; resolves to how many subscribers got it. */
  private async send(api: string, message: Buffer): Promise<number> {
    const channel = replyChannel(this.prefix, api);
    const n = sharded(this.redis)
      ? await this.redis.spublish(channel, message)
      : await this.redis.publish(channel, message);
    return Number(n);
  }
}

/** What a waiter gets: the result, and its bytes when they came with the reply. */
export interface Reply {
  result: JobResult;
  bytes?: Buffer;
}

type Waiter = (r: Reply) => void;

/**
 * The API's side: one subscription to this process's reply channel serves every request here
 * that waits for an answer. Bytes the worker did not store that no waiter takes any more (the
 * request timed out with a 504 and its job went on) are stored here, so
 * `GET /v1/jobs/{id}/result` still has them.
 */
export class CompletionListener {
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
    subscriber.on(
      sharded(subscriber) ? "smessageBuffer" : "messageBuffer",
      (from: Buffer, message: Buffer) => {
        if (from.toString() !== channel) return;
        const reply = decodeReply(message);
        if (!reply) return;
        const waiters = [...(this.waiting.get(reply.id) ?? [])];
        if (reply.bytes && !reply.stored && waiters.length === 0)
          this.store.putAt(reply.result.result, reply.bytes).catch((e: Error) => this.onError(e));
        for (const w of waiters) w({ result: reply.result, ...(reply.bytes ? { bytes: reply.bytes } : {}) });
      },
    );
    this.ready = sharded(subscriber) ? subscriber.ssubscribe(channel) : subscriber.subscribe(channel);
    this.ready.catch(() => {});
  }

  /** Resolves when it is subscribed (a reply sent before then would be missed). */
  async subscribed(): Promise<void> {
    await this.ready;
  }

  /**
   * The reply for `jobId`, once its worker sends it. Call `stop` when done waiting (whatever
   * answered): the promise then never settles.
   */
  wait(jobId: string): { reply: Promise<Reply>; stop: () => void } {
    let stop = () => {};
    const reply = new Promise<Reply>((resolve) => {
      const waiter: Waiter = resolve;
      const set = this.waiting.get(jobId) ?? new Set<Waiter>();
      this.waiting.set(jobId, set);
      set.add(waiter);
      stop = () => {
        set.delete(waiter);
        if (set.size === 0 && this.waiting.get(jobId) === set) this.waiting.delete(jobId);
      };
    });
    return { reply, stop };
  }

  /**
   * Resolves once an answer sent inline is in the store (the API that got it stored it because
   * nobody waited any more), or after `timeoutMs` (then the fetch that follows answers 410): for
   * a waiter that finds its job already completed, whose reply went by before it listened.
   */
  async stored(result: JobResult, timeoutMs: number): Promise<Reply> {
    const until = performance.now() + timeoutMs;
    while (performance.now() < until && !(await this.store.has(result.result).catch(() => false)))
      await new Promise((r) => setTimeout(r, 25));
    return { result };
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
