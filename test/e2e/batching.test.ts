// Dynamic batching end to end: a worker with MAX_BATCH_SIZE takes concurrent decodes of one
// model and shape together, runs them as batches, and answers each request with exactly the
// bytes it gets when it runs alone.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib.ts";
import { remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { type Stack, startStack } from "./stack.ts";

let stack: Stack;
let workerMetrics: string;
beforeAll(async () => {
  const healthPort = await freePort();
  workerMetrics = `http://127.0.0.1:${healthPort}/metrics`;
  // A window long enough for BullMQ to hand the worker every job of the burst first.
  stack = await startStack(
    {},
    { worker: { MAX_BATCH_SIZE: "8", BATCH_WINDOW_MS: "300", HEALTH_PORT: String(healthPort) } },
  );
});
afterAll(async () => {
  await stack?.stop();
});

/** Runs of the worker by batch entries: `le` bucket counts of hybrid_worker_batch_entries. */
async function batchRuns(): Promise<{ total: number; alone: number }> {
  const text = await (await fetch(workerMetrics)).text();
  const read = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? Number.NaN);
  return {
    total: read(/^hybrid_worker_batch_entries_count (\d+)/m),
    alone: read(/^hybrid_worker_batch_entries_bucket\{le="1"\} (\d+)/m),
  };
}

describe("dynamic batching (MAX_BATCH_SIZE=8)", () => {
  it("answers 16 concurrent decodes in batches, each with the bytes it gets alone", async () => {
    const endpoint = `${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`;
    const requests = Array.from({ length: 16 }, (_, k) => ({
      tensor: latents([1, 4, 8, 8], "float16", 10 + k).tensor,
      output_type: "pt" as const,
      partial_postprocess: true,
    }));
    const before = await batchRuns();
    const together = await Promise.all(requests.map((r) => remoteDecode(endpoint, r)));
    const during = await batchRuns();
    // 16 jobs, at most 8 a run, fewer runs than jobs: some ran together.
    expect(during.total - before.total).toBeGreaterThanOrEqual(2);
    expect(during.total - before.total).toBeLessThan(16);
    expect(during.alone - before.alone).toBeLessThan(16);
    for (const [k, r] of requests.entries()) {
      const alone = await remoteDecode(endpoint, r);
      expect(together[k]!.res.status).toBe(200);
      expect(together[k]!.res.headers.get("shape")).toBe(alone.res.headers.get("shape"));
      expect(Buffer.from(together[k]!.bytes).equals(Buffer.from(alone.bytes))).toBe(true);
    }
    // The second pass went one by one: every one of its runs had a single entry.
    const after = await batchRuns();
    expect(after.alone - during.alone).toBe(16);
  }, 60_000);
});
