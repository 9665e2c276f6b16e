import { AppError, JobResult, parseJobError, type VaeJob } from "@hybrid/protocol";
import { type Job, Queue, QueueEvents } from "bullmq";
import { bullConnection } from "./connection.ts";
import { queueName } from "./names.ts";

export interface ProducerOptions {
  redisUrl: string;
  prefix: string;
  /** Tries per job for transient failures (bad input is never retried). @defaultValue 3 */
  attempts?: number;
}

/**
 * The API's side of the queues: enqueue a job on its model's queue and wait for its result.
 * Queues and their event streams are opened on first use and kept.
 */
export class JobProducer {
  private readonly queues = new Map<string, { queue: Queue; events: QueueEvents; ready: Promise<unknown> }>();

  constructor(private readonly opts: ProducerOptions) {}

  private open(model: string) {
    let entry = this.queues.get(model);
    if (!entry) {
      const connection = bullConnection(this.opts.redisUrl);
      const name = queueName(model);
      // Adding a job fails fast when Redis is down (BullMQ's advice for producers); the event
      // stream is a blocking reader and keeps reconnecting.
      const queue = new Queue(name, {
        connection: { ...connection, maxRetriesPerRequest: 1, enableOfflineQueue: false },
        prefix: this.opts.prefix,
      });
      const events = new QueueEvents(name, { connection, prefix: this.opts.prefix });
      // Errors surface through the calls that use them; an unhandled 'error' event would crash.
      queue.on("error", () => {});
      events.on("error", () => {});
      entry = { queue, events, ready: Promise.all([queue.waitUntilReady(), events.waitUntilReady()]) };
      this.queues.set(model, entry);
    }
    return entry;
  }

  /** Adds the job to its model's queue. Job data must stay small: BullMQ copies it as JSON. */
  async enqueue(data: VaeJob, jobId: string): Promise<Job> {
    const { queue, ready } = this.open(data.model);
    await ready;
    return queue.add(data.kind, data, {
      jobId,
      attempts: this.opts.attempts ?? 3,
      backoff: { type: "exponential", delay: 500 },
      removeOnComplete: { age: 3600, count: 1000 },
      removeOnFail: { age: 24 * 3600, count: 5000 },
    });
  }

  /**
   * Waits until the job completes and returns its result; throws the job's AppError when it
   * failed, or `timeout` (504) after `timeoutMs`, when a job still waiting is withdrawn.
   */
  async waitForResult(job: Job, timeoutMs: number): Promise<JobResult> {
    const { events } = this.open(job.data.model);
    try {
      return JobResult.parse(await job.waitUntilFinished(events, timeoutMs));
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      if (message.includes("timed out before finishing")) {
        // Nobody will read the answer: don't spend a GPU on it if it has not started.
        await job.remove().catch(() => {});
        throw new AppError("timeout", `The job did not finish within ${timeoutMs} ms.`, {
          details: { job_id: job.id },
        });
      }
      throw parseJobError(message);
    }
  }

  /** Jobs waiting (not yet picked up) per model queue: the backlog. */
  async backlog(model: string): Promise<number> {
    return this.open(model).queue.getWaitingCount();
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].flatMap((q) => [q.queue.close(), q.events.close()]));
    this.queues.clear();
  }
}
