import { type ModelInfo, ModelInfo as ModelInfoSchema } from "@hybrid/protocol";
import { z } from "zod";
import type { RedisClient } from "./connection.ts";
import { knownModelsKey, workerKey, workersKey } from "./names.ts";

/** What a live worker announces: who it is and the models it serves. */
export const WorkerAnnouncement = z.object({
  workerId: z.string(),
  hostname: z.string(),
  pid: z.number(),
  startedAt: z.string(),
  models: z.array(ModelInfoSchema),
  /**
   * The execution provider each model's sessions run on, by model id (`cuda`, `tensorrt`, `cpu`;
   * `cuda+cpu` when its sessions differ). Optional: workers before it did not announce it.
   */
  providers: z.record(z.string(), z.string()).optional(),
});
export type WorkerAnnouncement = z.infer<typeof WorkerAnnouncement>;

/**
 * Live workers and their models, as heartbeat keys with a TTL: a worker that dies drops out
 * by itself after `ttlSeconds`. The API reads it for readiness, `GET /v1/models` and to know
 * a model's latent layout before it enqueues. Its keys share one hash tag (`{directory}`), so
 * its transactions and MGET work on a Redis Cluster; it is small and read at most once a second.
 */
export class WorkerDirectory {
  private cache: { at: number; workers: WorkerAnnouncement[] } | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlSeconds = 15,
    /** How long `list` may answer from memory, in ms. */
    private readonly cacheMs = 1000,
  ) {}

  async announce(a: WorkerAnnouncement): Promise<void> {
    const known = knownModelsKey(this.prefix);
    const tx = this.redis
      .multi()
      .set(workerKey(this.prefix, a.workerId), JSON.stringify(a), "EX", this.ttlSeconds)
      .sadd(workersKey(this.prefix), a.workerId);
    for (const m of a.models) tx.hset(known, m.id, String(Date.now()));
    // Forgotten a week after the last worker that served it went away.
    await tx.expire(known, 7 * 24 * 3600).exec();
  }

  /** Whether some worker has served this model before (it may be starting up again). */
  async known(modelId: string): Promise<boolean> {
    return (await this.redis.hexists(knownModelsKey(this.prefix), modelId)) === 1;
  }

  async withdraw(workerId: string): Promise<void> {
    await this.redis
      .multi()
      .del(workerKey(this.prefix, workerId))
      .srem(workersKey(this.prefix), workerId)
      .exec();
  }

  /**
   * Live workers. A set of ids plus one key per worker whose TTL Redis enforces: no clock of
   * ours is trusted, and the cost is O(workers), never a scan of the keyspace.
   */
  async list(fresh = false): Promise<WorkerAnnouncement[]> {
    if (!fresh && this.cache && Date.now() - this.cache.at < this.cacheMs) return this.cache.workers;
    const ids = await this.redis.smembers(workersKey(this.prefix));
    const values =
      ids.length > 0 ? await this.redis.mget(...ids.map((id) => workerKey(this.prefix, id))) : [];
    const workers: WorkerAnnouncement[] = [];
    const gone: string[] = [];
    values.forEach((v, i) => {
      const parsed = v ? WorkerAnnouncement.safeParse(JSON.parse(v)) : undefined;
      if (parsed?.success) workers.push(parsed.data);
      else if (!v) gone.push(ids[i]!);
    });
    // Workers that died without withdrawing: their key expired, drop them from the set.
    if (gone.length > 0) await this.redis.srem(workersKey(this.prefix), ...gone);
    this.cache = { at: Date.now(), workers };
    return workers;
  }

  /** Models served by at least one live worker, by id. */
  async models(fresh = false): Promise<Map<string, ModelInfo>> {
    const out = new Map<string, ModelInfo>();
    for (const w of await this.list(fresh)) for (const m of w.models) if (!out.has(m.id)) out.set(m.id, m);
    return out;
  }
}
