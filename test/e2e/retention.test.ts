import type { JobObject } from "@hybrid/protocol";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latents } from "./fixtures.ts";
import { decodeRequest, finished, getJob, pollJob } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

// Payloads live 2 s here (an hour by default); jobs themselves stay readable far longer.
let stack: Stack;
const redis = new Redis(REDIS_URL);
beforeAll(async () => {
  stack = await startStack({ PAYLOAD_TTL_SECONDS: "2" });
});
afterAll(async () => {
  await stack?.stop();
  redis.disconnect();
});

const small = { tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" as const };
const payloadKeys = async () => (await redis.keys(`${stack.prefix}:payload:*`)).length;

describe("retention", () => {
  it("drops a sync job's payloads once it is answered", async () => {
    const before = await payloadKeys();
    const res = await decodeRequest(stack.baseUrl, small);
    expect(res.status).toBe(200);
    const id = res.headers.get("x-job-id")!;
    await pollJob(stack.baseUrl, id, finished);
    // The worker frees the input as the job completes, the API the result once sent.
    await expect.poll(payloadKeys, { timeout: 5000, interval: 50 }).toBe(before);
    // The job itself is still readable; its delivered result is gone.
    expect((await getJob(stack.baseUrl, id)).status).toBe("succeeded");
    expect((await fetch(`${stack.baseUrl}/v1/jobs/${id}/result`)).status).toBe(410);
  });

  it("keeps an async result until its TTL, then answers 410 while the job stays readable", async () => {
    const res = await decodeRequest(stack.baseUrl, small, { Prefer: "respond-async" });
    const job = (await res.json()) as JobObject;
    await pollJob(stack.baseUrl, job.id, finished);
    expect((await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/result`)).status).toBe(200);
    const status = async () => (await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/result`)).status;
    await expect.poll(status, { timeout: 10_000, interval: 200 }).toBe(410);
    const gone = await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/result`);
    expect(await gone.json()).toMatchObject({ code: "payload_expired" });
    expect((await getJob(stack.baseUrl, job.id)).status).toBe("succeeded");
  });
});
