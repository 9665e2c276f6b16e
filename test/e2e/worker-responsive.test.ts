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

describe("the worker's main thread during a long model run", () => {
  it("answers its own health endpoint while the run is in flight", async () => {
    const run = remoteDecode(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`, {
      tensor: latents([2, 4, 160, 160]).tensor,
      output_type: "pt",
    });
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    const live = await fetch(`http://127.0.0.1:${healthPort}/health/live`);
    const ready = await fetch(`http://127.0.0.1:${healthPort}/health/ready`);
    expect(performance.now() - t0).toBeLessThan(200);
    expect([live.status, ready.status]).toEqual([200, 200]);
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
