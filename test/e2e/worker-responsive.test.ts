import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib.ts";
import { readTensor, remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { type Stack, startStack } from "./stack.ts";

// A 300 ms job lock, renewed every 150 ms by the worker's main thread: if a model run blocked
// that thread, the lock would lapse mid-run and BullMQ would refuse to complete the job.
let stack: Stack;
let healthPort: number;
beforeAll(async () => {
  healthPort = await freePort();
  stack = await startStack({
    LOCK_DURATION_MS: "300",
    REQUEST_TIMEOUT_MS: "20000",
    HEALTH_PORT: String(healthPort),
  });
});
afterAll(async () => {
  await stack?.stop();
});

/** The status of the stack's newest job (a sync request does not tell its id until it answers). */
async function newestStatus(): Promise<string | undefined> {
  const list = (await (await fetch(`${stack.baseUrl}/v1/jobs?limit=1`)).json()) as {
    data: { status: string }[];
  };
  return list.data[0]?.status;
}

describe("the worker's main thread during a long model run", () => {
  it("answers its own health endpoint while the run is in flight", async () => {
    const run = remoteDecode(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`, {
      tensor: latents([2, 4, 160, 160]).tensor,
      output_type: "pt",
    });
    await expect.poll(newestStatus, { timeout: 20_000, interval: 20 }).toBe("running");
    const live = await fetch(`http://127.0.0.1:${healthPort}/health/live`);
    const ready = await fetch(`http://127.0.0.1:${healthPort}/health/ready`);
    expect([live.status, ready.status]).toEqual([200, 200]);
    // Both answered while the job still runs: a main thread blocked by the run would answer the
    // first only once the run is over, and record the job as finished before the second.
    expect(await newestStatus()).toBe("running");
    expect((await run).res.status).toBe(200);
  });

  it("keeps renewing the job lock, so a run far longer than the lock completes", async () => {
    const t0 = performance.now();
    const { res, bytes } = await remoteDecode(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`, {
      tensor: latents([3, 4, 160, 160]).tensor,
      output_type: "pt",
      partial_postprocess: true,
    });
    const ms = performance.now() - t0;
    expect(res.status, Buffer.from(bytes).toString().slice(0, 200)).toBe(200);
    expect(readTensor(bytes, res.headers).shape).toEqual([3, 1280, 1280, 3]);
    expect(ms).toBeGreaterThan(600); // at least two lock periods
  });
});
