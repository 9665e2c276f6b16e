import { isTerminal, type JobStatus } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import type { JobMeta, JobRecords } from "./job-records.ts";
import { ownerActiveKey } from "./names.ts";

/**
 * How long an unfinished-set entry without a job view may be a job still being created, in ms:
 * far longer than storing an input and adding a job takes (a process that died in between
 * leaves such an entry, which then stops counting after this long).
 */
const CREATION_GRACE_MS = 30_000;

/**
 * The per-key cap on unfinished jobs (`max_queued`): each capped job is in its owner's
 * unfinished set from its admission ({@link reserve}) to its terminal event (`JobEvents.publish`).
 */
export class OwnerCaps {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly records: JobRecords,
    /** The status of a job, null when it has no view: the check behind a count at the cap. */
    private readonly statusOf: (jobId: string) => Promise<JobStatus | null>,
  ) {}

  /**
   * Admits a capped job against its owner's cap: counts the owner's unfinished jobs and, below
   * `cap`, adds it to them (and to the owner's jobs) in one script, so parallel submissions
   * cannot all pass. Returns null when admitted, else the unfinished jobs found.
   *
   * At the cap, each entry's job is checked and finished ones dropped before one more try: a job
   * leaves the set with its terminal event, which is written just after BullMQ records the end
   * (or never, if that process died in between) — the cap must not count such jobs.
   */
  async reserve(meta: JobMeta, cap: number): Promise<number | null> {
    if ((await this.records.index(meta, cap)) === null) return null;
    const left = await this.unfinished(meta.owner, cap);
    return left >= cap ? left : this.records.index(meta, cap);
  }

  /**
   * Unfinished jobs of an owner; entries past retention are dropped. At `verifyFrom` or more,
   * each entry's job is checked and finished ones dropped (see {@link reserve}).
   */
  async unfinished(owner: string, verifyFrom = Number.POSITIVE_INFINITY): Promise<number> {
    const key = ownerActiveKey(this.prefix, owner);
    const [, count] = (await this.redis
      .multi()
      .zremrangebyscore(key, "-inf", Date.now() - this.records.retentionSeconds * 1000)
      .zcard(key)
      .exec()) ?? [
      [null, 0],
      [null, 0],
    ];
    const n = Number(count?.[1] ?? 0);
    if (n < verifyFrom) return n;
    const entries = await this.redis.zrange(key, 0, -1, "WITHSCORES");
    const ids: [string, number][] = [];
    for (let i = 0; i + 1 < entries.length; i += 2) ids.push([entries[i]!, Number(entries[i + 1])]);
    const done = await Promise.all(
      ids.map(async ([id, createdAt]) => {
        const status = await this.statusOf(id);
        // A job joins the set before its record and its BullMQ job exist: one without a view
        // is still being created unless it is older than any creation takes.
        const ended = status === null ? Date.now() - createdAt > CREATION_GRACE_MS : isTerminal(status);
        return ended ? id : null;
      }),
    );
    const ended = done.filter((id): id is string => id !== null);
    if (ended.length > 0) await this.redis.zrem(key, ...ended);
    return ids.length - ended.length;
  }
}
