// Redis memory budget (issue 13, item 4): on a Redis of 64 MB (`noeviction`, like
// infra/redis.conf), a flood of async decodes whose results pile up is refused with 503
// `overloaded` at the high-water mark, before Redis refuses writes; every job admitted before
// that completes with its whole result; the service takes work again once memory drains (the
// results expire). A Redis OOM that still happens (here: filled behind the API's back) is a 503
// `overloaded` too, never a 500. Each part runs a stack of its own on this file's redis-server.
import type { ChildProcess } from "node:child_process";
import type { JobObject } from "@hybrid/protocol";
import { createRedis, JobRecords, PayloadStore, type RedisClient } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { freePort, startRedisServer, stop } from "../../scripts/lib.ts";
import { latents } from "./fixtures.ts";
import { decodeRequest } from "./jobs-client.ts";
import { type Stack, startStack } from "./stack.ts";

const MAX_MEMORY = 64 * 1024 * 1024;
/** Results live this long: long enough to fetch each, short enough for the drain to be seen. */
const PAYLOAD_TTL_SECONDS = 45;
/** Jobs waiting per queue: the results of jobs admitted but not run must fit above the mark. */
const MAX_BACKLOG = 4;
const CLIENTS = 4;
/** Refusals that end the flood. */
const REFUSALS = 10;

// A 512 x 512 decode answered as a uint8 tensor: 786,432 bytes of result per 64 KiB of input.
const decode = (seed: number) => ({
  tensor: latents([1, 4, 64, 64], "float32", seed).tensor,
  output_type: "pt" as const,
  partial_postprocess: true,
});
const RESULT_BYTES = 3 * 512 * 512;
const ASYNC = { Prefer: "respond-async" };

let server: ChildProcess;
let url: string;
let redis: RedisClient;
let stack: Stack | undefined;

beforeAll(async () => {
  const port = await freePort();
  server = await startRedisServer(port);
  url = `redis://127.0.0.1:${port}`;
  redis = createRedis(url, "command");
  await redis.config("SET", "maxmemory", String(MAX_MEMORY));
  await redis.config("SET", "maxmemory-policy", "noeviction");
});
afterAll(async () => {
  await stack?.stop();
  redis?.disconnect();
  await stop(server, 2000);
});

const usedMemory = async () => Number(/^used_memory:(\d+)/m.exec(await redis.info("memory"))?.[1]);

/** Watches an admitted job to its end, then reads its result: its status and byte count. */
async function outcome(id: string): Promise<{ status: string; bytes: number }> {
  const job = await vi.waitFor(
    async () => {
      const res = await fetch(`${stack!.baseUrl}/v1/jobs/${id}`);
      const j = (await res.json()) as JobObject;
      if (!["succeeded", "failed", "canceled"].includes(j.status))
        throw new Error(`job ${id} still ${j.status}`);
      return j;
    },
    { timeout: 180_000, interval: 300 },
  );
  if (job.status !== "succeeded") return { status: `${job.status}: ${job.error?.message}`, bytes: 0 };
  const res = await fetch(`${stack!.baseUrl}/v1/jobs/${id}/result`);
  return { status: job.status, bytes: (await res.arrayBuffer()).byteLength };
}

describe("a Redis of 64 MB", () => {
  it("answers a Redis OOM with 503 overloaded and a Retry-After, not 500", async () => {
    // The gauge samples once at start-up (memory is low then) and not again: the OOM is Redis'.
    stack = await startStack(
      { REDIS_URL: url },
      { api: { REDIS_MEMORY_HIGH_WATER: "1", REDIS_MEMORY_SAMPLE_MS: "3600000" } },
    );
    const ok = await decodeRequest(stack.baseUrl, decode(1), ASYNC);
    expect(ok.status).toBe(202);
    // An input as a worker would find it, written while there is room.
    const inputKey = await new PayloadStore(redis, stack.prefix, 60).put(new Uint8Array([1, 2, 3]));
    // Fill Redis behind the API's back until it refuses writes (small ones too: Redis counts a
    // command's own arguments, so a big write is refused before a small one would be).
    let i = 0;
    for (const size of [1 << 20, 1 << 12]) {
      const junk = Buffer.alloc(size, 7);
      while (
        await redis.set(`junk:${i++}`, junk).then(
          () => true,
          () => false,
        )
      );
    }
    const refused = await decodeRequest(stack.baseUrl, decode(2), ASYNC);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ code: "overloaded" });
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    // A worker's reads of a job it runs (and the freeing of its input) still work while Redis
    // refuses writes: the job admitted above must be able to run and end.
    const job = (await ok.json()) as JobObject;
    const records = new JobRecords(redis, stack.prefix, 60);
    const start = await records.start(job.id, inputKey);
    expect(start.meta?.id).toBe(job.id);
    expect(start.payload).toEqual(Buffer.from([1, 2, 3]));
    // An async job is followed from the start: its record comes back to publish its end.
    expect((await records.finish(job.id, inputKey))?.id).toBe(job.id);
    expect(await redis.exists(inputKey)).toBe(0);
    for (let j = 0; j < i; j++) await redis.del(`junk:${j}`);
    await stack.stop();
    stack = undefined;
  });

  it("refuses a flood with 503 before Redis is full; every admitted job completes; work is taken again after", async () => {
    await redis.flushall();
    stack = await startStack(
      { REDIS_URL: url, PAYLOAD_TTL_SECONDS: String(PAYLOAD_TTL_SECONDS) },
      { api: { MAX_QUEUE_BACKLOG: String(MAX_BACKLOG) } },
    );
    const watched: Promise<{ status: string; bytes: number }>[] = [];
    const statuses = new Map<number, number>();
    const codes = new Map<string, number>();
    let refusals = 0;
    let peak = 0;
    let seed = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (refusals < REFUSALS && seed < 5000) {
          const res = await decodeRequest(stack!.baseUrl, decode(++seed), ASYNC);
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const body = (await res.json()) as JobObject & { code?: string };
          if (res.status === 202) watched.push(outcome(body.id));
          else if (res.status === 429 && body.code === "overloaded") {
            // The backlog is full: this client paces itself, as a client honoring 429 would.
            await new Promise((r) => setTimeout(r, 50));
          } else {
            refusals++;
            codes.set(`${res.status} ${body.code}`, (codes.get(`${res.status} ${body.code}`) ?? 0) + 1);
            if (res.status === 503) expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
          }
          peak = Math.max(peak, await usedMemory());
        }
      }),
    );
    const report =
      `answers ${JSON.stringify(Object.fromEntries(statuses))}, refusals ` +
      `${JSON.stringify(Object.fromEntries(codes))}; peak used_memory ${peak}`;
    // Every refusal other than the backlog's is the memory's 503.
    expect([...codes.keys()], report).toEqual(["503 overloaded"]);
    // No admitted job is lost or half-written.
    const outcomes = await Promise.all(watched);
    expect(outcomes.length, report).toBeGreaterThan(20);
    const lost = outcomes.filter((o) => o.status !== "succeeded" || o.bytes !== RESULT_BYTES);
    expect(lost, `${report}; not whole: ${JSON.stringify(lost)}`).toEqual([]);
    expect(peak, report).toBeLessThan(MAX_MEMORY);
    // As the results expire, memory drains and new work is admitted again.
    await vi.waitFor(
      async () => {
        const res = await decodeRequest(stack!.baseUrl, decode(++seed), ASYNC);
        await res.arrayBuffer();
        if (res.status !== 202) throw new Error(`still ${res.status}`);
      },
      { timeout: (PAYLOAD_TTL_SECONDS + 60) * 1000, interval: 1000 },
    );
  }, 300_000);
});
