import { AppError, type JobData, JobResult, parseJobError } from "@hybrid/protocol";
import { type CatalogSettings, jobCatalog } from "./catalog.ts";
import type { RedisClient } from "./connection.ts";
import type { Queues } from "./queues.ts";
import type { Answer, JobOutcome, PendingReply, ReplyListener } from "./reply-channel.ts";

/**
 * When a new job's waiter first reads BullMQ's record, in ms. The reply all but always comes
 * first; reading sooner would only add work for every request that waits in a queue under load.
 */
const FIRST_CHECK_MS = 5000;

const BACKLOG = "hybridBacklog";
// KEYS: a queue's `wait` and `paused` lists (one slot: BullMQ's keys share the queue's hash tag).
const BACKLOG_LUA = "return redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])";

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

  /**
   * Jobs waiting for a worker in a queue: the backlog. Both of BullMQ's waiting lists (a paused
   * queue keeps new jobs in `paused`), the same count as its `getWaitingCount`, in one small
   * script: BullMQ's own counting script, or an ioredis pipeline on BullMQ's connection (which
   * copies every script BullMQ defined onto the pipeline), cost the API's hot path more than the
   * two LLENs themselves.
   */
  async backlog(queue: string): Promise<number> {
    const q = this.queues.queue(queue);
    const client = (await q.client) as unknown as Record<string, unknown> & RedisClient;
    if (!(BACKLOG in client)) client.defineCommand(BACKLOG, { numberOfKeys: 2, lua: BACKLOG_LUA });
    const count = await (client[BACKLOG] as (...keys: string[]) => Promise<number>)(
      q.toKey("wait"),
      q.toKey("paused"),
    );
    return Number(count);
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
