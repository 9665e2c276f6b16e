import { bullPrefix, jobCatalog } from "@hybrid/queue";
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
    const queue = jobCatalog.queue("decode", "sd-v1-tiny");
    const key = (list: string) => `${bullPrefix(stack.prefix, queue)}:${queue}:${list}`;
    const waiting = async () => redis.llen(key("wait"));
    const poll = { timeout: 10_000, interval: 20 };
    await expect.poll(() => redis.llen(key("active")), poll).toBe(1);

    const abort = new AbortController();
    const { query, headers, body } = prepareDecode({
      tensor: latents([1, 4, 8, 8]).tensor,
      output_type: "pt",
    });
    const gone = fetch(`${url}?${query}`, { method: "POST", headers, body, signal: abort.signal }).catch(
      (e: Error) => e.name,
    );
    await expect.poll(waiting, poll).toBe(1);
    abort.abort();
    expect(await gone).toBe("AbortError");
    await expect.poll(waiting, poll).toBe(0);
    expect((await busy).res.status).toBe(200);
  }, 60_000);
});
