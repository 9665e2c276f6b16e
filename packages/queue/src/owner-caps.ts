import { isTerminal } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import { ownerActiveKey } from "./names.ts";

/**
 * The per-key cap on unfinished jobs (`max_queued`): each capped job is in its owner's
 * unfinished set from its creation (`JobRecords.create`) to its terminal event
 * (`JobEvents.publish`).
 */
export class OwnerCaps {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly retentionSeconds: number,
    /** Whether a job has ended (or is gone): the check behind a count at the cap. */
    private readonly finished: (jobId: string) => Promise<boolean>,
  ) {}

  /**
   * Unfinished jobs of an owner; entries past retention are dropped. At `verifyFrom` or more,
   * each entry's job is checked and finished ones dropped: a job leaves the set with its terminal
   * event, which is written just after BullMQ records the end (or never, if that process died in
   * between) — the cap must not count such jobs.
   */
  async unfinished(owner: string, verifyFrom = Number.POSITIVE_INFINITY): Promise<number> {
    const key = ownerActiveKey(this.prefix, owner);
    const [, count] = (await this.redis
      .multi()
      .zremrangebyscore(key, "-inf", Date.now() - this.retentionSeconds * 1000)
      .zcard(key)
      .exec()) ?? [
      [null, 0],
      [null, 0],
    ];
    const n = Number(count?.[1] ?? 0);
    if (n < verifyFrom) return n;
    const ids = await this.redis.zrange(key, 0, -1);
    const done = await Promise.all(ids.map(async (id) => ((await this.finished(id)) ? id : null)));
    const ended = done.filter((id): id is string => id !== null);
    if (ended.length > 0) await this.redis.zrem(key, ...ended);
    return ids.length - ended.length;
  }
}

/** A job view's status says the job has ended. */
export const hasEnded = (view: { status: Parameters<typeof isTerminal>[0] } | null): boolean =>
  !view || isTerminal(view.status);
