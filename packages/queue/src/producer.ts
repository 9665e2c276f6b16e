import { AppError, type JobData, JobResult, parseJobError } from "@hybrid/protocol";
import { type CatalogSettings, jobCatalog } from "./catalog.ts";
import type { RedisClient } from "./connection.ts";
import { backlogReservationsKey } from "./names.ts";
import type { Queues } from "./queues.ts";
import type { Answer, JobOutcome, PendingReply, ReplyListener } from "./reply-channel.ts";

/**
 * When a new job's waiter first reads BullMQ's record, in ms. The reply all but always comes
 * first; reading sooner would only add work for every request that waits in a queue under load.
 */
const FIRST_CHECK_MS = 5000;

/**
 * How long a backlog reservation holds a place without its job appearing in the queue, in ms:
 * far longer than storing an input and adding a job takes, so only the reservations of a
 * process that died between the two (or of a job canceled before anyone looked) linger that long.
 */
const RESERVATION_MS = 30_000;

const ADMIT = "hybridAdmitToBacklog";
// KEYS: a queue's `wait` and `paused` lists and its reservations (one slot: they share the
// queue's hash tag). ARGV: the backlog limit ('' to count only), the prefix of the queue's job
// keys, the job id to reserve a place for, reservation lifetime in ms.
// A reservation ends when its job's hash exists (the job was added: from then on it is counted
// in `wait`, or it left the backlog) or when it is older than its lifetime; so no command is
// needed to release a place once the job is added. Returns {admitted (1/0), jobs counted}.
const ADMIT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[4]))
local reserved = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if redis.call('EXISTS', ARGV[2] .. id) == 1 then
    redis.call('ZREM', KEYS[3], id)
  else
    reserved = reserved + 1
  end
end
local n = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + reserved
if ARGV[1] == '' then return {0, n} end
if n >= tonumber(ARGV[1]) then return {0, n} end
redis.call('ZADD', KEYS[3], now, ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {1, n}
`;

/**
 * The API's side of the job queues: add a job to its (kind, model) queue with the catalog's
 * options, wait for its answer, and tell how full and how fast-draining a queue is. It reads no
 * BullMQ event stream: answers come on the reply channel, and a queue's drain rate from the
 * per-minute counts BullMQ's workers keep (read only when work is refused).
 */
export class JobProducer {
  constructor(
    private readonly queues: Queues,
    private readonly settings: CatalogSettings,
    /** This process's end of the reply channel. */
    private readonly replies: ReplyListener,
  ) {}

  /** The queue a job of this data goes to. */
  queueOf(data: Pick<JobData, "kind" | "model">): string {
    return jobCatalog.queue(data.kind, data.model);
  }

  /** Adds the job to its queue. Job data must stay small: BullMQ copies it as JSON. */
  async enqueue(data: JobData, jobId: string): Promise<void> {
    const queue = this.queues.queue(this.queueOf(data));
    await queue.waitUntilReady();
    await queue.add(data.kind, data, { ...jobCatalog.jobOptions(data.kind, this.settings), jobId });
  }

  /** Where workers send the answers of jobs this process waits for (job data `reply`). */
  get replyTo(): string {
    return this.replies.id;
  }

  /** Starts listening for a job's answer; call it before the job is enqueued. */
  expect(jobId: string): PendingReply {
    return this.replies.expect(jobId);
  }

  /**
   * Waits for the answer `pending` listens for: resolves with the result (and its bytes when
   * they came in the reply), rejects with the job's AppError, or `timeout` (504, with the job id)
   * after `timeoutMs`. The job itself goes on: it stays fetchable at `/v1/jobs/{id}`.
   * `joined`: the job existed before this request listened (an idempotent retry), so BullMQ is
   * asked at once whether it already finished.
   */
  answer(
    pending: PendingReply,
    jobId: string,
    queue: string,
    timeoutMs: number,
    joined = false,
  ): Promise<Answer> {
    return pending.answer({
      timeoutMs,
      firstCheckMs: joined ? 0 : FIRST_CHECK_MS,
      check: () => this.outcome(queue, jobId),
    });
  }

  /** A job's outcome from BullMQ's record: null while unfinished (or gone). */
  async outcome(queue: string, jobId: string): Promise<JobOutcome> {
    const job = await this.queues.queue(queue).getJob(jobId);
    // A failed try that will be retried has a failedReason but no finishedOn yet.
    if (!job?.finishedOn) return null;
    if (!job.returnvalue) return { ok: false, error: parseJobError(job.failedReason) };
    const result = JobResult.safeParse(job.returnvalue);
    return result.success
      ? { ok: true, result: result.data }
      : { ok: false, error: new AppError("internal", "The job finished without a result.") };
  }

  /** Runs the admission script on the queue's own connection (see {@link admit}). */
  private async admission(queue: string, limit: number | null, jobId: string): Promise<[number, number]> {
    const q = this.queues.queue(queue);
    // BullMQ's connection: an ioredis pipeline on it (or BullMQ's own counting script) would copy
    // every script BullMQ defined onto the request, costing the hot path more than the count.
    const client = (await q.client) as unknown as Record<string, unknown> & RedisClient;
    if (!(ADMIT in client)) client.defineCommand(ADMIT, { numberOfKeys: 3, lua: ADMIT_LUA });
    const [admitted, n] = (await (client[ADMIT] as (...args: (string | number)[]) => Promise<number[]>)(
      q.toKey("wait"),
      q.toKey("paused"),
      backlogReservationsKey(this.queues.prefix, queue),
      limit === null ? "" : limit,
      q.toKey(""),
      jobId,
      RESERVATION_MS,
    )) ?? [0, 0];
    return [Number(admitted), Number(n)];
  }

  /**
   * Jobs waiting for a worker in a queue: the backlog. Both of BullMQ's waiting lists (a paused
   * queue keeps new jobs in `paused`), as its `getWaitingCount` counts them, plus the places
   * {@link admit} reserved for jobs being added.
   */
  async backlog(queue: string): Promise<number> {
    return (await this.admission(queue, null, ""))[1];
  }

  /**
   * Counts the queue's backlog and, below `limit`, reserves a place in it for `jobId`, in one
   * script: parallel submissions cannot all pass a count taken before any of them is added. The
   * place is taken by the job once it is added; {@link release} gives it back sooner when the job
   * will not be added. Returns whether the job was admitted and the backlog it found.
   */
  async admit(queue: string, jobId: string, limit: number): Promise<{ admitted: boolean; waiting: number }> {
    const [admitted, waiting] = await this.admission(queue, limit, jobId);
    return { admitted: admitted === 1, waiting };
  }

  /** Gives back the place {@link admit} reserved for a job that will not be added. */
  async release(queue: string, jobId: string): Promise<void> {
    const client = (await this.queues.queue(queue).client) as unknown as RedisClient;
    await client.zrem(backlogReservationsKey(this.queues.prefix, queue), jobId);
  }

  /**
   * Seconds until `jobs` more jobs of a queue have been taken, from the rate its workers
   * finished jobs at lately (BullMQ's per-minute counts); `fallback` when nothing finished.
   */
  async secondsToDrain(queue: string, jobs: number, fallback = 10): Promise<number> {
    const q = this.queues.queue(queue);
    const now = Date.now();
    const rates = await Promise.all(
      (["completed", "failed"] as const).map(async (type) => {
        const m = await q.getMetrics(type, 0, 0).catch(() => null);
        if (!m || m.meta.prevTS === 0) return 0;
        // Jobs since the last minute boundary a worker crossed, plus the whole minute before it.
        const since = Math.max(0, m.meta.count - m.meta.prevCount);
        const spanMs = Math.max(1000, now - m.meta.prevTS) + (m.data.length > 0 ? 60_000 : 0);
        return ((since + (m.data[0] ?? 0)) * 1000) / spanMs;
      }),
    );
    const perSecond = rates[0]! + rates[1]!;
    if (perSecond <= 0) return fallback;
    return Math.min(3600, Math.max(1, Math.ceil(jobs / perSecond)));
  }
}
