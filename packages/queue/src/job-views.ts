import {
  type AppError,
  isTerminal,
  JobProgress,
  JobResult,
  type JobStatus,
  type JobView,
  parseJobError,
} from "@hybrid/protocol";
import type { Job } from "bullmq";
import type { RedisClient } from "./connection.ts";
import type { JobMeta, JobRecords } from "./job-records.ts";
import type { Queues } from "./queues.ts";

/** BullMQ's state of a job, or `pending` (recorded, not yet enqueued) or `missing` (removed). */
export type JobState = string;

/** A job as the API reads it: its view, and once it finished, its result or its error. */
export interface JobOutcomeView {
  view: JobView;
  /** The answer's description (its bytes are in the payload store) once it succeeded. */
  result: JobResult | null;
  /** Why it failed, once it failed. */
  error: AppError | null;
}

/**
 * The status view of jobs: the job resource as clients read it (`GET /v1/jobs/{id}`, lists,
 * events), from a job's record and BullMQ's job. Views carry no URLs: the API adds them (it
 * owns its routes). Nothing outside this package sees a BullMQ `Job`.
 */
export class JobViews {
  constructor(
    private readonly redis: RedisClient,
    private readonly queues: Queues,
    private readonly records: JobRecords,
  ) {}

  /**
   * The job's BullMQ job (null once removed) and its state. The state is read first: a job that
   * moves on between the two reads then shows its older state with newer fields (harmless),
   * never "completed" without its finish time.
   */
  private async bullJob(meta: JobMeta): Promise<{ job: Job | null; state: JobState }> {
    const queue = this.queues.queue(meta.queue);
    const state = await queue.getJobState(meta.id);
    const job = (await queue.getJob(meta.id)) ?? null;
    return { job, state: job ? state : "missing" };
  }

  /** Whether the job is in its queue yet (its creator adds it right after the record). */
  async enqueued(meta: JobMeta): Promise<boolean> {
    return (await this.queues.queue(meta.queue).getJob(meta.id)) !== undefined;
  }

  /** The job's view, or null when there is no such job (never was, or past its retention). */
  async describe(id: string): Promise<JobView | null> {
    const meta = await this.records.get(id);
    return meta ? this.of(meta) : null;
  }

  /** The view of a job whose record the caller holds. */
  async of(meta: JobMeta): Promise<JobView | null> {
    const { job, state } = await this.bullJob(meta);
    return this.build(meta, job, state);
  }

  /** The view with the finished job's result or error (`GET /v1/jobs/{id}/result`). */
  async outcome(meta: JobMeta): Promise<JobOutcomeView | null> {
    const { job, state } = await this.bullJob(meta);
    const view = await this.build(meta, job, state);
    if (!view || !job) return null;
    return {
      view,
      result: view.status === "succeeded" ? JobResult.parse(job.returnvalue) : null,
      error: view.status === "failed" ? parseJobError(job.failedReason) : null,
    };
  }

  /** An owner's jobs, newest first. The cursor is the id of the last job of the previous page. */
  async list(
    owner: string,
    limit: number,
    cursor?: string,
  ): Promise<{ jobs: JobView[]; next: string | null }> {
    // One more than asked tells whether there is a next page.
    const ids = await this.records.page(owner, limit, cursor);
    if (!ids) return { jobs: [], next: null };
    const page = ids.slice(0, limit);
    const jobs = (await Promise.all(page.map((id) => this.describe(id)))).filter(
      (j): j is JobView => j !== null,
    );
    return { jobs, next: ids.length > limit ? (page[page.length - 1] ?? null) : null };
  }

  /**
   * The view from a record and a BullMQ job the caller already holds (a worker in its
   * handlers), in `state`; `pending`: recorded, about to be added to its queue.
   */
  async build(meta: JobMeta, job: Job | null, state: JobState): Promise<JobView | null> {
    if (!job && state !== "pending" && meta.canceledAt === null) return null;
    const error = job?.failedReason && state === "failed" ? parseJobError(job.failedReason) : null;
    let status: JobStatus;
    if (!job) status = state === "pending" && meta.canceledAt === null ? "queued" : "canceled";
    else if (error?.code === "canceled") status = "canceled";
    else if (state === "completed") status = "succeeded";
    else if (state === "failed") status = "failed";
    else if (state === "active") status = "running";
    else status = "queued";
    const progress = JobProgress.safeParse(meta.progress ?? job?.progress);
    const startedAt = status === "queued" ? null : (job?.processedOn ?? null);
    const finishedAt = job?.finishedOn ?? (status === "canceled" ? meta.canceledAt : null);
    const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);
    return {
      id: meta.id,
      kind: meta.kind,
      model: meta.model,
      status,
      queue_position: state === "waiting" ? await this.position(meta) : null,
      progress: progress.success ? progress.data : null,
      created_at: iso(meta.createdAt)!,
      started_at: iso(startedAt),
      completed_at: isTerminal(status) ? iso(finishedAt) : null,
      attempts: job?.attemptsMade ?? 0,
      metrics: {
        queue_ms: startedAt ? Math.max(0, startedAt - meta.createdAt) : null,
        run_ms: startedAt && finishedAt && isTerminal(status) ? Math.max(0, finishedAt - startedAt) : null,
      },
      seed: seedOf(job),
      warnings: JobResult.safeParse(job?.returnvalue).data?.warnings ?? [],
      error:
        status === "canceled"
          ? { code: "canceled", message: "The job was canceled." }
          : error && { code: error.code, message: error.message },
    };
  }

  /**
   * Jobs ahead of this one. BullMQ pushes new jobs at the head of `wait` and takes from the
   * tail; while a queue is paused they sit in `paused` (and still read as "waiting"). Both lists
   * are the queue's, so they share its slot and one transaction reads them.
   */
  private async position(meta: JobMeta): Promise<number | null> {
    const q = this.queues.queue(meta.queue);
    const tx = this.redis.multi();
    for (const list of [q.toKey("wait"), q.toKey("paused")]) tx.lpos(list, meta.id).llen(list);
    const r = ((await tx.exec()) ?? []).map(([, v]) => v);
    for (let i = 0; i + 1 < r.length; i += 2) {
      const [pos, len] = [r[i], r[i + 1]];
      if (typeof pos === "number" && typeof len === "number") return Math.max(0, len - 1 - pos);
    }
    return null;
  }
}

/** A generation's seed, from its job data. */
function seedOf(job: Job | null): number | null {
  const seed = (job?.data as { params?: { seed?: unknown } } | undefined)?.params?.seed;
  return typeof seed === "number" ? seed : null;
}
