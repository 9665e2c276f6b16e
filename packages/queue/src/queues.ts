import { Queue, QueueEvents } from "bullmq";
import { bullConnection } from "./connection.ts";

/**
 * BullMQ `Queue`s (to add and read jobs) and `QueueEvents` (to wait for them), opened by name on
 * first use and kept for the life of the process. Each holds its own Redis connections.
 */
export class Queues {
  private readonly queues = new Map<string, Queue>();
  private readonly streams = new Map<string, QueueEvents>();

  constructor(
    private readonly redisUrl: string,
    readonly prefix: string,
  ) {}

  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      // Adding a job fails fast when Redis is down (BullMQ's advice for producers).
      q = new Queue(name, {
        connection: { ...bullConnection(this.redisUrl), maxRetriesPerRequest: 1, enableOfflineQueue: false },
        prefix: this.prefix,
      });
      // Errors surface through the calls that use the queue; an unhandled 'error' event would crash.
      q.on("error", () => {});
      // Every waiting sync request adds a listener (BullMQ's waitUntilFinished): not a leak.
      q.setMaxListeners(0);
      this.queues.set(name, q);
    }
    return q;
  }

  /** The queue's event stream, a blocking reader that keeps reconnecting. Ready when resolved. */
  async events(name: string): Promise<QueueEvents> {
    let e = this.streams.get(name);
    if (!e) {
      // Read from this moment, not from "$" once the first blocking read starts: a job that
      // finishes in between would otherwise never be heard of by whoever waits for it.
      e = new QueueEvents(name, {
        connection: bullConnection(this.redisUrl),
        prefix: this.prefix,
        lastEventId: `${Date.now()}-0`,
      });
      e.on("error", () => {});
      this.streams.set(name, e);
    }
    await e.waitUntilReady();
    return e;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values(), ...this.streams.values()].map((q) => q.close()));
    this.queues.clear();
    this.streams.clear();
  }
}
