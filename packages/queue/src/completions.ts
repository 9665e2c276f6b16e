import { JobResult } from "@hybrid/protocol";
import type { Redis } from "ioredis";

/** Pub/sub channel on which workers announce each result the moment it is stored. */
export const completionsChannel = (prefix: string) => `${prefix}:completions`;

/**
 * A worker's side: announces a job's result as soon as its bytes are stored, before BullMQ
 * marks the job completed. Waiting API requests answer from this notice instead of from
 * BullMQ's event stream, which comes one script call and one stream read later.
 */
export class CompletionPublisher {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /** Fire and forget: a lost notice only means the waiter answers from BullMQ's event instead. */
  announce(jobId: string, result: JobResult): void {
    this.redis
      .publish(completionsChannel(this.prefix), JSON.stringify({ id: jobId, result }))
      .catch(() => {});
  }
}

/**
 * The API's side: one subscription serves every request of this process that waits for a result.
 * A job's own BullMQ event stays the authority (failures, and a notice lost to a reconnect):
 * this only lets a success arrive sooner.
 */
export class CompletionListener {
  private readonly waiting = new Map<string, (r: JobResult) => void>();
  private readonly ready: Promise<unknown>;

  /** `subscriber` becomes a subscriber connection: give the listener one of its own. */
  constructor(
    private readonly subscriber: Redis,
    prefix: string,
  ) {
    const channel = completionsChannel(prefix);
    subscriber.on("message", (from: string, message: string) => {
      if (from !== channel) return;
      let msg: { id?: unknown; result?: unknown };
      try {
        msg = JSON.parse(message);
      } catch {
        return;
      }
      const resolve = typeof msg.id === "string" ? this.waiting.get(msg.id) : undefined;
      const result = JobResult.safeParse(msg.result);
      if (resolve && result.success) resolve(result.data);
    });
    this.ready = subscriber.subscribe(channel);
    this.ready.catch(() => {});
  }

  /** Resolves when it is subscribed (a notice sent before then would be missed). */
  async subscribed(): Promise<void> {
    await this.ready;
  }

  /**
   * The result of `jobId` once a worker announces it. Call `stop` when done waiting (whatever
   * answered): the promise then never settles.
   */
  wait(jobId: string): { result: Promise<JobResult>; stop: () => void } {
    let stop = () => {};
    const result = new Promise<JobResult>((resolve) => {
      this.waiting.set(jobId, resolve);
      stop = () => {
        if (this.waiting.get(jobId) === resolve) this.waiting.delete(jobId);
      };
    });
    return { result, stop };
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
