import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareDecode, remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

let stack: Stack;
const redis = new Redis(REDIS_URL);
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
  redis.disconnect();
});

describe("a client that hangs up while its job waits", () => {
  it("gets its job withdrawn from the queue instead of run for nobody", async () => {
    const url = `${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`;
    // Keep the worker busy for a while (CONCURRENCY=1) so the next job waits.
    const busy = remoteDecode(url, { tensor: latents([2, 4, 128, 128]).tensor, output_type: "pt" });
    const wait = `${stack.prefix}:model-sd-v1-tiny:wait`;
    const waiting = async () => redis.llen(wait);

    const abort = new AbortController();
    const { query, headers, body } = prepareDecode({
      tensor: latents([1, 4, 8, 8]).tensor,
      output_type: "pt",
    });
    const gone = fetch(`${url}?${query}`, { method: "POST", headers, body, signal: abort.signal }).catch(
      (e: Error) => e.name,
    );
    let queued = 0;
    for (let i = 0; i < 100 && queued === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      queued = await waiting();
    }
    expect(queued).toBe(1);
    abort.abort();
    expect(await gone).toBe("AbortError");
    let left = 1;
    for (let i = 0; i < 50 && left > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      left = await waiting();
    }
    expect(left).toBe(0);
    expect((await busy).res.status).toBe(200);
  }, 60_000);
});
