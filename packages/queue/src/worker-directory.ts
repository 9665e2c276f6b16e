import { type ModelInfo, ModelInfo as ModelInfoSchema } from "@hybrid/protocol";
import type { Redis } from "ioredis";
import { z } from "zod";
import { workerKey } from "./names.ts";

/** What a live worker announces: who it is and the models it serves. */
export const WorkerAnnouncement = z.object({
  workerId: z.string(),
  hostname: z.string(),
  pid: z.number(),
  startedAt: z.string(),
  models: z.array(ModelInfoSchema),
});
export type WorkerAnnouncement = z.infer<typeof WorkerAnnouncement>;

/**
 * Live workers and their models, as heartbeat keys with a TTL: a worker that dies drops out
 * by itself after `ttlSeconds`. The API reads it for readiness, `GET /v1/models` and to know
 * a model's latent layout before it enqueues.
 */
export class WorkerDirectory {
  private cache: { at: number; workers: WorkerAnnouncement[] } | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds = 15,
    /** How long `list` may answer from memory, in ms. */
    private readonly cacheMs = 1000,
  ) {}

  async announce(a: WorkerAnnouncement): Promise<void> {
    await this.redis.set(workerKey(this.prefix, a.workerId), JSON.stringify(a), "EX", this.ttlSeconds);
  }

  async withdraw(workerId: string): Promise<void> {
    await this.redis.del(workerKey(this.prefix, workerId));
  }

  async list(fresh = false): Promise<WorkerAnnouncement[]> {
    if (!fresh && this.cache && Date.now() - this.cache.at < this.cacheMs) return this.cache.workers;
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await this.redis.scan(cursor, "MATCH", workerKey(this.prefix, "*"), "COUNT", 200);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== "0");
    const values = keys.length > 0 ? await this.redis.mget(...keys) : [];
    const workers: WorkerAnnouncement[] = [];
    for (const v of values) {
      if (!v) continue;
      const parsed = WorkerAnnouncement.safeParse(JSON.parse(v));
      if (parsed.success) workers.push(parsed.data);
    }
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
