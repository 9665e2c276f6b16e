import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startRedisServer, stop } from "../../scripts/lib.ts";
import { remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { type Stack, startStack } from "./stack.ts";

// A Redis of our own, so this test can kill it without touching anyone else's.
let redis: ChildProcess | undefined;
let stack: Stack;
let redisPort: number;
beforeAll(async () => {
  redisPort = await freePort();
  redis = await startRedisServer(redisPort);
  stack = await startStack({ REDIS_URL: `redis://127.0.0.1:${redisPort}` });
});
afterAll(async () => {
  await stack?.stop();
  await stop(redis);
});

describe("when Redis goes away", () => {
  it("a request gets a prompt 503 JSON (not a hang, not a 500), and service resumes when Redis is back", async () => {
    const decode = () =>
      remoteDecode(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`, {
        tensor: latents([1, 4, 4, 4]).tensor,
        output_type: "pt",
      });
    expect((await decode()).res.status).toBe(200);

    await stop(redis);
    const t0 = performance.now();
    const { res, bytes } = await decode();
    // A hang would last REQUEST_TIMEOUT_MS (120 s) and end in a timeout, not this 503; the bound
    // only has to tell the two apart, with room for a loaded machine.
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(res.status).toBe(503);
    expect(JSON.parse(Buffer.from(bytes).toString())).toMatchObject({ code: "unavailable" });
    expect(stack.api.exitCode).toBeNull();

    redis = await startRedisServer(redisPort);
    // The worker re-announces itself on its next heartbeat (1 s in tests).
    await expect.poll(async () => (await decode()).res.status, { timeout: 20_000, interval: 200 }).toBe(200);
  }, 90_000);
});
