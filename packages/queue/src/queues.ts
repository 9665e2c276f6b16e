import { isClusterUrl } from "@hybrid/service";
import { Queue } from "bullmq";
import type { Cluster } from "ioredis";
import { bullConnection } from "./connection.ts";
import { bullPrefix } from "./names.ts";

/**
 * BullMQ `Queue`s (to add and read jobs), opened by name on first use and kept for the life of
 * the process. On one Redis each holds its own connection; on a cluster the queues share one
 * `Cluster` connection. Each queue's keys live under {@link bullPrefix}. No BullMQ event stream
 * is read: answers come on the reply channel (`reply-channel.ts`).
 */
export class Queues {
  private readonly queues = new Map<string, Queue>();
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
      this.queues.set(name, q);
    }
    return q;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
    this.cluster?.disconnect();
    this.cluster = undefined;
  }
}
