import { randomUUID } from "node:crypto";
import type { DecodeJob } from "@hybrid/protocol";
import { useTestRedis } from "@hybrid/testing/vitest";
import { afterAll, describe, expect, it } from "vitest";
import { jobCatalog } from "./catalog.ts";
import { createRedis } from "./connection.ts";
import type { JobMeta } from "./job-records.ts";
import { JobStore } from "./job-store.ts";
import { ownerActiveKey, ownerJobsKey } from "./names.ts";
import { PayloadStore } from "./payload-store.ts";
import { JobProducer } from "./producer.ts";
import { Queues } from "./queues.ts";
import { ReplyListener } from "./reply-channel.ts";

// A key prefix of this file's own on the shared Redis; its keys are deleted after the file.
const { url: redisUrl, prefix, redis } = useTestRedis("job-store");
const settings = { attempts: 2, retentionSeconds: 60, webhookAttempts: 3, webhookBackoffMs: 100 };
const queues = new Queues(redisUrl, prefix);
const payloads = new PayloadStore(redis, prefix, 60);
const store = new JobStore(redis, queues, payloads, { prefix, catalog: settings });
const replies = new ReplyListener(createRedis(redisUrl, "blocking"), prefix, payloads);
const producer = new JobProducer(queues, settings, replies);

afterAll(async () => {
  replies.close();
  await queues.close();
});

// No worker serves these queues: jobs stay queued, which is what these tests look at.
async function submit(owner: string, model = "store-model", record: Partial<JobMeta> = {}): Promise<JobMeta> {
  const input = await payloads.put(new Uint8Array([1, 2, 3]));
  const meta: JobMeta = {
    id: randomUUID(),
    kind: "decode",
    model,
    queue: jobCatalog.queue("decode", model),
    owner,
    createdAt: Date.now(),
    webhook: null,
    canceledAt: null,
    logged: true,
    capped: true,
    imageAsJson: false,
    ...record,
  };
  await store.create(meta);
  const data: DecodeJob = {
    kind: "decode",
    model,
    input,
    shape: [1, 4, 8, 8],
    dtype: "float32",
    scaling: null,
    packed: null,
    output: { kind: "uint8" },
  };
  await producer.enqueue(data, meta.id);
  return meta;
}

describe("JobStore", () => {
  it("queues every progress webhook but marks only the newest as the one to send", async () => {
    const meta = await submit("o-progress", "progress-model", {
      webhook: { url: "https://hooks.example/p", events: ["progress"] },
    });
    const view = await store.views.describe(meta.id);
    const running = { ...view!, status: "running" as const };
    const ids: string[] = [];
    for (const step of [1, 2, 3]) {
      const seq = await store.events.publish(meta, "progress", { ...running, progress: { step, total: 3 } });
      ids.push(`msg_${meta.id}_${seq}`);
    }
    const queued = await queues.queue(jobCatalog.webhookQueue).getJobs(["waiting", "delayed"]);
    expect(
      queued
        .map((j) => j.id)
        .filter((id) => ids.includes(id!))
        .sort(),
    ).toEqual([...ids].sort());
    expect(await Promise.all(ids.map((id) => store.events.isLatestProgress(meta.id, id)))).toEqual([
      false,
      false,
      true,
    ]);
    // A job whose progress was never noted sends whatever it has (deliveries queued before notes existed).
    expect(await store.events.isLatestProgress(randomUUID(), "msg_x")).toBe(true);
  });

  it("describes a queued job with its place in line, and logs its queued event", async () => {
    const a = await submit("o1");
    const b = await submit("o1");
    const [ja, jb] = await Promise.all([store.views.describe(a.id), store.views.describe(b.id)]);
    expect(ja).toMatchObject({
      id: a.id,
      status: "queued",
      queue_position: 0,
      started_at: null,
      error: null,
    });
    expect(jb?.queue_position).toBe(1);
    // A view names no URL: the API, which owns the routes, adds them.
    expect(ja).not.toHaveProperty("urls");
    const events = await store.events.read(a.id);
    expect(events.map((e) => [e.event, e.job.status])).toEqual([["queued", "queued"]]);
    expect(await store.views.describe(randomUUID())).toBeNull();
  });

  it("lists an owner's jobs newest first, page by page, and no one else's", async () => {
    const mine: string[] = [];
    for (let i = 0; i < 5; i++) mine.push((await submit("lister")).id);
    await submit("someone-else");
    const seen: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await store.views.list("lister", 2, cursor);
      seen.push(...page.jobs.map((j) => j.id));
      if (!page.next) break;
      cursor = page.next;
    }
    expect(seen).toEqual([...mine].reverse());
  });

  it("cancels a queued job at once: removed, input freed, canceled event, off the unfinished set", async () => {
    const meta = await submit("canceler");
    const input = (await queues.queue(meta.queue).getJob(meta.id))!.data.input as string;
    expect(await store.caps.unfinished("canceler")).toBe(1);
    const object = await store.cancel(meta);
    expect(object).toMatchObject({ status: "canceled", error: { code: "canceled" } });
    expect(object?.completed_at).not.toBeNull();
    expect(await queues.queue(meta.queue).getJob(meta.id)).toBeUndefined();
    expect(await payloads.get(input)).toBeNull();
    expect((await store.events.read(meta.id)).map((e) => e.event)).toEqual(["queued", "canceled"]);
    expect(await store.caps.unfinished("canceler")).toBe(0);
    expect((await store.views.describe(meta.id))?.status).toBe("canceled");
  });

  it("claims an idempotency key once, and tells later claims what claimed it", async () => {
    const key = `k-${randomUUID()}`;
    expect(await store.idempotency.claim("o2", key, { jobId: "job-1", fingerprint: "fp-1" }, 60)).toBeNull();
    expect(await store.idempotency.claim("o2", key, { jobId: "job-2", fingerprint: "fp-2" }, 60)).toEqual({
      jobId: "job-1",
      fingerprint: "fp-1",
    });
    // Keys are per owner.
    expect(await store.idempotency.claim("o3", key, { jobId: "job-3", fingerprint: "fp-1" }, 60)).toBeNull();
    await store.idempotency.release("o2", key);
    expect(await store.idempotency.claim("o2", key, { jobId: "job-4", fingerprint: "fp-4" }, 60)).toBeNull();
  });
});

describe("JobStore caps and logging", () => {
  it("drops finished jobs the unfinished set still holds once the count reaches the cap", async () => {
    const a = await submit("capped");
    const b = await submit("capped");
    // b finishes without its terminal event being written (its process died in between), a
    // while ago: a young entry without a job may still be being created, so it counts.
    const bull = await queues.queue(b.queue).getJob(b.id);
    await bull!.remove();
    expect(await store.caps.unfinished("capped", 2)).toBe(2);
    await redis.zadd(ownerActiveKey(prefix, "capped"), Date.now() - 45_000, b.id);
    expect(await store.caps.unfinished("capped")).toBe(2);
    expect(await store.caps.unfinished("capped", 2)).toBe(1);
    expect(await store.caps.unfinished("capped")).toBe(1);
    expect((await store.views.describe(a.id))?.status).toBe("queued");
  });

  it("admits exactly `cap` of parallel submissions of one owner: count and join are one script", async () => {
    const metas = Array.from({ length: 50 }, () => ({
      id: randomUUID(),
      kind: "decode" as const,
      model: "store-model",
      queue: jobCatalog.queue("decode", "store-model"),
      owner: "racer",
      createdAt: Date.now(),
      webhook: null,
      canceledAt: null,
      logged: false,
      capped: true,
      imageAsJson: false,
    }));
    const found = await Promise.all(metas.map((m) => store.caps.reserve(m, 5)));
    expect(found.filter((n) => n === null)).toHaveLength(5);
    // Each refusal saw the five admitted jobs (none of them has a BullMQ job, so each counts).
    expect(found.filter((n) => n !== null).every((n) => n === 5)).toBe(true);
    expect(await store.caps.unfinished("racer")).toBe(5);
    // The admitted ones are in the owner's job index too; the refused ones nowhere.
    const admitted = metas.filter((_, i) => found[i] === null).map((m) => m.id);
    expect(new Set(await redis.zrange(ownerJobsKey(prefix, "racer"), 0, -1))).toEqual(new Set(admitted));
  });

  it("writes no events for a job nobody follows, until a reader follows it", async () => {
    const meta = await submit("quiet", "store-model", { logged: false, capped: false });
    expect(await store.events.read(meta.id)).toEqual([]);
    // Not counted toward a cap its key does not have.
    expect(await store.caps.unfinished("quiet")).toBe(0);
    const object = (await store.views.describe(meta.id))!;
    expect(
      await store.events.publish(meta, "progress", { ...object, progress: { step: 1, total: 4 } }),
    ).toBeNull();
    expect(await store.events.read(meta.id)).toEqual([]);
    // Progress still reaches the job object.
    expect((await store.views.describe(meta.id))?.progress).toEqual({ step: 1, total: 4 });
    const followed = await store.records.follow(meta);
    expect(followed.logged).toBe(true);
    expect((await store.records.get(meta.id))?.logged).toBe(true);
    expect(
      await store.events.publish(followed, "progress", { ...object, progress: { step: 2, total: 4 } }),
    ).not.toBeNull();
    expect((await store.events.read(meta.id)).map((e) => e.event)).toEqual(["progress"]);
  });
});

describe("JobRecords.start and finish", () => {
  it("reads a record with its input in one go, then deletes the input at the end", async () => {
    const meta = await submit("reads-owner");
    const bytes = Buffer.from([7, 8, 9, 10]);
    const input = await payloads.put(bytes);
    const start = await store.records.start(meta.id, payloads.keyOf(input));
    expect(start.meta).toMatchObject({ id: meta.id, owner: "reads-owner", logged: true, capped: true });
    expect(start.payload).toEqual(bytes);
    expect((await store.records.finish(meta.id, payloads.keyOf(input)))?.id).toBe(meta.id);
    expect(await payloads.get(input)).toBeNull();
  });

  it("gives a finished job's record only when its end is published: followed, or capped", async () => {
    const plain = { logged: false, capped: false };
    // A plain sync job: neither followed nor capped. Its input goes, and no record comes back.
    const unfollowed = await submit("finish-owner", "store-model", plain);
    const input = await payloads.put(new Uint8Array([5]));
    expect(await store.records.finish(unfollowed.id, payloads.keyOf(input))).toBeNull();
    expect(await payloads.get(input)).toBeNull();
    // An SSE reader that attached mid-run makes its end published.
    const followed = await submit("finish-owner", "store-model", plain);
    await store.records.follow(followed);
    expect(await store.records.finish(followed.id, null)).toMatchObject({ id: followed.id, logged: true });
    const capped = await submit("finish-owner", "store-model", { logged: false });
    expect(await store.records.finish(capped.id, null)).toMatchObject({ id: capped.id, capped: true });
    expect(await store.records.finish(randomUUID(), null)).toBeNull();
    // Read whole at once for an async job: the same answers, the input still freed.
    const input2 = await payloads.put(new Uint8Array([6]));
    expect(await store.records.finish(followed.id, payloads.keyOf(input2), true)).toMatchObject({
      id: followed.id,
    });
    expect(await payloads.get(input2)).toBeNull();
    expect(await store.records.finish(unfollowed.id, null, true)).toBeNull();
    expect(await store.records.finish(randomUUID(), null, true)).toBeNull();
  });

  it("gives null for a job with no record or no payload, and refuses keys not of the payload store", async () => {
    const gone = await store.records.start(
      randomUUID(),
      payloads.keyOf(await payloads.put(new Uint8Array([1]))),
    );
    expect(gone.meta).toBeNull();
    expect(gone.payload).toEqual(Buffer.from([1]));
    const meta = await submit("reads-owner");
    expect((await store.records.start(meta.id, null)).meta?.id).toBe(meta.id);
    expect(payloads.keyOf(`${prefix}:job:{${meta.id}}`)).toBeNull();
    expect(payloads.keyOf(42)).toBeNull();
  });
});
