import { bullPrefix, jobCatalog } from "@hybrid/queue";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib.ts";
import { prepareDecode, remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

let stack: Stack | undefined;
const redis = new Redis(REDIS_URL);
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});
afterAll(() => {
  redis.disconnect();
});

const poll = { timeout: 10_000, interval: 20 };

/** A decode's BullMQ list length on the stack's one sd-v1-tiny decode queue. */
function lists(s: Stack) {
  const queue = jobCatalog.queue("decode", "sd-v1-tiny");
  return (list: "wait" | "active") => redis.llen(`${bullPrefix(s.prefix, queue)}:${queue}:${list}`);
}

/** Keeps the worker's one session thread busy for a while (a 2×1024² decode): jobs sent now wait. */
function busyDecode(s: Stack) {
  return remoteDecode(`${s.baseUrl}/v1/vae/sd-v1-tiny/decode`, {
    tensor: latents([2, 4, 128, 128]).tensor,
    output_type: "pt",
  });
}

/** A small sync decode whose client hangs up when `abort` fires; resolves to the fetch error's name. */
function abandonedDecode(s: Stack, abort: AbortController): Promise<string | Response> {
  const { query, headers, body } = prepareDecode({ tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" });
  return fetch(`${s.baseUrl}/v1/vae/sd-v1-tiny/decode?${query}`, {
    method: "POST",
    headers,
    body,
    signal: abort.signal,
  }).catch((e: Error) => e.name);
}

describe("a client that hangs up while its job waits", () => {
  it("gets its job withdrawn from the queue instead of run for nobody (no prefetch)", async () => {
    // One job at a time and none taken ahead (PREFETCH=0), so the next job waits in the queue.
    const s = await startStack({}, { worker: { PREFETCH: "0" } });
    stack = s;
    const llen = lists(s);
    const busy = busyDecode(s);
    await expect.poll(() => llen("active"), poll).toBe(1);

    const abort = new AbortController();
    const gone = abandonedDecode(s, abort);
    await expect.poll(() => llen("wait"), poll).toBe(1);
    abort.abort();
    expect(await gone).toBe("AbortError");
    await expect.poll(() => llen("wait"), poll).toBe(0);
    expect((await busy).res.status).toBe(200);
  }, 60_000);

  it("gets its job dropped unrun when a worker had prefetched it (the default)", async () => {
    const healthPort = await freePort();
    const s = await startStack({}, { worker: { HEALTH_PORT: String(healthPort) } });
    stack = s;
    const metrics = async () => {
      const text = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
      const read = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
      return {
        // Model runs: a job's decode is one run (no batching here).
        runs: read(/^hybrid_worker_batch_entries_count (\d+)/m),
        canceled: read(
          /^hybrid_worker_jobs_total\{kind="decode",model="sd-v1-tiny",outcome="canceled"\} (\d+)/m,
        ),
        succeeded: read(
          /^hybrid_worker_jobs_total\{kind="decode",model="sd-v1-tiny",outcome="succeeded"\} (\d+)/m,
        ),
      };
    };
    const before = await metrics();
    const llen = lists(s);
    const busy = busyDecode(s);
    await expect.poll(() => llen("active"), poll).toBe(1);

    // The worker takes the next job while the first runs: it waits in the worker, not the queue.
    const abort = new AbortController();
    const gone = abandonedDecode(s, abort);
    await expect.poll(() => llen("active"), poll).toBe(2);
    expect(await llen("wait")).toBe(0);
    abort.abort();
    expect(await gone).toBe("AbortError");
    // Canceled where it waited for the thread: it ends without a model run of its own.
    await expect.poll(async () => (await metrics()).canceled - before.canceled, poll).toBe(1);
    expect((await busy).res.status).toBe(200);
    await expect.poll(async () => (await metrics()).succeeded - before.succeeded, poll).toBe(1);
    const after = await metrics();
    expect(after.runs - before.runs).toBe(1);
    expect(await llen("active")).toBe(0);
  }, 60_000);
});
