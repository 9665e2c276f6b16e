import { AppError, type JobData, JobResult, parseJobError } from "@hybrid/protocol";
import type { Job } from "bullmq";
import { type CatalogSettings, jobCatalog } from "./catalog.ts";
import type { CompletionListener, Reply } from "./completions.ts";
import type { Queues } from "./queues.ts";

/** How long a waiter that saw its job complete waits for its inline answer (reply or store). */
const INLINE_REPLY_GRACE_MS = 5000;

/** How far back completions count toward a queue's observed drain rate. */
const DRAIN_WINDOW_MS = 60_000;

/**
 * The API's side of the job queues: add a job to its (kind, model) queue with the catalog's
 * options, wait for its result, and tell how full and how fast-draining a queue is.
 */
export class JobProducer {
  /** Per queue: how fast it has been draining. */
  private readonly drained = new Map<string, RateMeter>();

  constructor(
    private readonly queues: Queues,
    private readonly settings: CatalogSettings,
    /** Workers' result notices: a success reaches a waiting request without BullMQ's round trips. */
    private readonly completions?: CompletionListener,
  ) {}

  /** The queue a job of this data goes to. */
  queueOf(data: Pick<JobData, "kind" | "model">): string {
    return jobCatalog.queue(data.kind, data.model);
  }

  /** Adds the job to its queue. Job data must stay small: BullMQ copies it as JSON. */
  async enqueue(data: JobData, jobId: string): Promise<Job> {
    const name = this.queueOf(data);
    const queue = this.queues.queue(name);
    await queue.waitUntilReady();
    void this.watch(name);
    return queue.add(data.kind, data, { ...jobCatalog.jobOptions(data.kind, this.settings), jobId });
  }

  /** Where workers send the answers of jobs this process waits for (job data `reply`). */
  get replyTo(): string | undefined {
    return this.completions?.id;
  }

  /**
   * Waits until the job finishes and returns its result (with the answer bytes when they came
   * in the worker's reply); throws the job's AppError when it failed, or `timeout` (504, with
   * the job id) after `timeoutMs`. The job itself goes on: it stays fetchable at
   * `/v1/jobs/{id}`.
   */
  async waitForResult(job: Job, timeoutMs: number): Promise<Reply> {
    // Listening before anything else: a fast job's reply must not pass before we listen.
    const notice = job.id ? this.completions?.wait(job.id) : undefined;
    const events = await this.queues.events(job.queueName);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new AppError(
              "timeout",
              `The job did not finish within ${timeoutMs} ms; it goes on: GET /v1/jobs/${job.id} follows it.`,
              {
                details: { job_id: job.id },
              },
            ),
          ),
        timeoutMs,
      );
    });
    // BullMQ's own deadline, a little later than ours, only releases its listener.
    const finished = job.waitUntilFinished(events, timeoutMs + 1000).then(
      (value: unknown): Promise<Reply> | Reply => {
        const result = JobResult.parse(value);
        // Inline bytes exist only in the reply, which can trail BullMQ's event by a moment (its
        // socket carries the bytes). Should it be lost, the fetch that follows answers 410.
        if (result.inline && notice)
          return Promise.race([notice.reply, this.completions!.stored(result, INLINE_REPLY_GRACE_MS)]);
        return { result };
      },
      (e: unknown) => {
        throw parseJobError(e instanceof Error ? e.message : String(e));
      },
    );
    finished.catch(() => {});
    try {
      return await Promise.race([finished, timedOut, ...(notice ? [notice.reply] : [])]);
    } finally {
      clearTimeout(timer);
      notice?.stop();
    }
  }

  /** Jobs waiting for a worker in a queue: the backlog (one LLEN, so admission is exact). */
  async backlog(queue: string): Promise<number> {
    void this.watch(queue);
    return this.queues.queue(queue).getWaitingCount();
  }

  /**
   * Seconds until `jobs` more jobs of a queue have been taken, from the rate it drained at
   * over the last minute; `fallback` when nothing finished lately.
   */
  secondsToDrain(queue: string, jobs: number, fallback = 10): number {
    const meter = this.drained.get(queue);
    const perSecond = meter?.rate() ?? 0;
    if (perSecond <= 0) return fallback;
    return Math.min(3600, Math.max(1, Math.ceil(jobs / perSecond)));
  }

  /** Starts counting a queue's completions (once per queue). */
  private async watch(queue: string): Promise<void> {
    if (this.drained.has(queue)) return;
    const meter = new RateMeter(DRAIN_WINDOW_MS);
    this.drained.set(queue, meter);
    const events = await this.queues.events(queue).catch(() => undefined);
    events?.on("completed", () => meter.tick());
    events?.on("failed", () => meter.tick());
  }
}

/** Events per second over a sliding window, in one-second buckets (O(1) per event). */
export class RateMeter {
  private readonly counts: number[];
  private readonly seconds: number[];
  private readonly started = Date.now();

  constructor(private readonly windowMs: number) {
    const n = Math.max(1, Math.ceil(windowMs / 1000));
    this.counts = new Array(n).fill(0);
    this.seconds = new Array(n).fill(-1);
  }

  tick(now = Date.now()): void {
    const s = Math.floor(now / 1000);
    const i = s % this.counts.length;
    if (this.seconds[i] !== s) {
      this.seconds[i] = s;
      this.counts[i] = 0;
    }
    this.counts[i]!++;
  }

  /** Events per second over the window (or since the meter started, if that is shorter). */
  rate(now = Date.now()): number {
    const s = Math.floor(now / 1000);
    let total = 0;
    for (let i = 0; i < this.counts.length; i++) {
      if (this.seconds[i]! > s - this.counts.length) total += this.counts[i]!;
    }
    const spanMs = Math.min(this.windowMs, Math.max(1000, now - this.started));
    return (total * 1000) / spanMs;
  }
}
