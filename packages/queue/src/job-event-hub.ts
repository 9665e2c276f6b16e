import type { RedisClient } from "./connection.ts";
import { type JobEvent, parseEvent } from "./job-events.ts";
import { jobEventsChannel } from "./names.ts";

type Listener = (e: JobEvent) => void;

/**
 * Fans job events out to the readers in this process (SSE streams) from one Redis subscription,
 * so a thousand open streams cost one connection, not a thousand blocking reads.
 */
export class JobEventHub {
  private readonly listeners = new Map<string, Set<Listener>>();
  private subscribed: Promise<unknown> | undefined;

  /** `subscriber` becomes a subscriber connection: give the hub one of its own. */
  constructor(
    private readonly subscriber: RedisClient,
    private readonly prefix: string,
  ) {
    subscriber.on("message", (_channel: string, message: string) => {
      let msg: { id: string; seq: string; event: string; data: string };
      try {
        msg = JSON.parse(message);
      } catch {
        return;
      }
      const set = this.listeners.get(msg.id);
      if (!set) return;
      const event = parseEvent(msg.seq, ["event", msg.event, "data", msg.data]);
      for (const l of set) l(event);
    });
  }

  /** Calls `listener` with every new event of the job until the returned function is called. */
  async listen(jobId: string, listener: Listener): Promise<() => void> {
    this.subscribed ??= this.subscriber.subscribe(jobEventsChannel(this.prefix));
    await this.subscribed;
    let set = this.listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.listeners.set(jobId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(jobId);
    };
  }

  /** Listeners attached now, over all jobs (each open event stream holds one). */
  get listenerCount(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
