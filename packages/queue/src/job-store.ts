import { AppError, type JobView } from "@hybrid/protocol";
import type { CatalogSettings } from "./catalog.ts";
import type { RedisClient } from "./connection.ts";
import { Idempotency } from "./idempotency.ts";
import { JobEvents } from "./job-events.ts";
import { type JobMeta, JobRecords } from "./job-records.ts";
import { JobViews } from "./job-views.ts";
import { cancelChannel } from "./names.ts";
import { OwnerCaps } from "./owner-caps.ts";
import type { PayloadStore } from "./payload-store.ts";
import type { Queues } from "./queues.ts";

export interface JobStoreOptions {
  prefix: string;
  catalog: CatalogSettings;
}

/**
 * The job resource beside BullMQ's own record, by concern: `records` (who owns a job, what
 * follows it), `views` (the status clients read), `events` (log, SSE notices, webhooks),
 * `idempotency` and `caps`. This only wires them together, and holds the one operation that
 * spans them: {@link cancel}.
 */
export class JobStore {
  readonly records: JobRecords;
  readonly views: JobViews;
  readonly events: JobEvents;
  readonly idempotency: Idempotency;
  readonly caps: OwnerCaps;

  constructor(
    private readonly redis: RedisClient,
    private readonly queues: Queues,
    private readonly payloads: PayloadStore,
    private readonly opts: JobStoreOptions,
  ) {
    const retention = opts.catalog.retentionSeconds;
    this.records = new JobRecords(redis, opts.prefix, retention);
    this.views = new JobViews(redis, queues, this.records);
    this.events = new JobEvents(redis, queues, opts.prefix, opts.catalog);
    this.idempotency = new Idempotency(redis, opts.prefix);
    this.caps = new OwnerCaps(
      redis,
      opts.prefix,
      this.records,
      async (id) => (await this.views.describe(id))?.status ?? null,
    );
  }

  /**
   * Records a new job before it is enqueued, with its `queued` event first in its log when it
   * is logged. `indexed`: its owner's indexes hold it already (a capped job, see `caps.reserve`).
   */
  async create(meta: JobMeta, indexed = false): Promise<void> {
    const queued = meta.logged ? await this.views.build(meta, null, "pending") : null;
    await this.records.create(meta, queued ? JSON.stringify(queued) : null, indexed);
  }

  /**
   * Cancels a job: a queued one is removed at once; a running one is flagged and its worker told
   * to stop at its next checkpoint; a finished one is left as it is. Returns the job as it is now.
   */
  async cancel(meta: JobMeta): Promise<JobView | null> {
    const queue = this.queues.queue(meta.queue);
    const [state, job] = [await queue.getJobState(meta.id), await queue.getJob(meta.id)];
    if (!job || state === "completed" || state === "failed") return this.views.of(meta);
    const flagged = await this.records.markCanceled(meta);
    if (state !== "active") {
      // Fails when a worker took the job meanwhile: then it is running and is told below.
      const removed = await job.remove().then(
        () => true,
        () => false,
      );
      if (removed) {
        await this.payloads.delete(String((job.data as { input?: unknown }).input ?? ""));
        const view = await this.views.build(flagged, null, "missing");
        if (view) await this.events.publish(flagged, "canceled", view);
        return view;
      }
    }
    await this.redis.publish(cancelChannel(this.opts.prefix), meta.id);
    return this.views.of(flagged);
  }
}

/** Thrown where a job id names nothing the caller may see. */
export const jobNotFound = (id: string) =>
  new AppError("not_found", `No job ${id} (it never existed, expired, or belongs to another key).`);
