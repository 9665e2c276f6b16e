import { Queue, QueueEvents } from "bullmq";
import type { Cluster } from "ioredis";
import { bullConnection, isClusterUrl } from "./connection.ts";
import { bullPrefix } from "./names.ts";

/**
 * BullMQ `Queue`s (to add and read jobs) and `QueueEvents` (to wait for them), opened by name on
 * first use and kept for the life of the process. On one Redis each holds its own connections; on
 * a cluster the queues share one `Cluster` connection (the event streams copy it for their
 * blocking reads). Each queue's keys live under {@link bullPrefix}.
 */
export class Queues {
  private readonly queues = new Map<string, Queue>();
  private readonly streams = new Map<string, QueueEvents>();
  /** The cluster connection the queues share (cluster URLs only); closed with them. */
  private cluster: Cluster | undefined;

  constructor(
    private readonly redisUrl: string,
    /** The deployment's prefix (`QUEUE_PREFIX`), not BullMQ's per-queue one. */
    readonly prefix: string,
  ) {}

  /** The cluster connection, opened on first use. */
  private shared(): Cluster {
    this.cluster ??= bullConnection(this.redisUrl) as Cluster;
    return this.cluster;
  }

  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      // Adding a job fails fast when Redis is down (BullMQ's advice for producers). A cluster
      // connection keeps ioredis' own offline queue and failover retries instead.
      q = new Queue(name, {
        connection: isClusterUrl(this.redisUrl)
          ? this.shared()
          : bullConnection(this.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false }),
        prefix: bullPrefix(this.prefix, name),
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
        connection: isClusterUrl(this.redisUrl) ? this.shared() : bullConnection(this.redisUrl),
        prefix: bullPrefix(this.prefix, name),
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
    this.cluster?.disconnect();
    this.cluster = undefined;
  }
}
