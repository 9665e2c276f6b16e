import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { finished, pollJob } from "./jobs-client.ts";
import { type Stack, startStack } from "./stack.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ REQUEST_TIMEOUT_MS: "40" });
});
afterAll(async () => {
  await stack?.stop();
});

describe("a sync request that outlives REQUEST_TIMEOUT_MS", () => {
  it("answers 504 JSON with the job id, and the service stays healthy", async () => {
    // 1280 x 1280 output: far more than 40 ms on the tiny model.
    const { res, bytes } = await remoteDecode(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`, {
      tensor: latents([2, 4, 160, 160]).tensor,
      output_type: "pt",
    });
    expect(res.status).toBe(504);
    const body = JSON.parse(Buffer.from(bytes).toString()) as { code: string; job_id: string; error: string };
    expect(body.code).toBe("timeout");
    expect(body.job_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get("x-job-id")).toBe(body.job_id);
    expect(body.error).toContain(body.job_id);
    expect((await fetch(`${stack.baseUrl}/health/ready`)).status).toBe(200);

    // The job goes on, and its result is there to fetch afterwards.
    const done = await pollJob(stack.baseUrl, body.job_id, finished);
    expect(done.status).toBe("succeeded");
    const result = await fetch(`${stack.baseUrl}/v1/jobs/${body.job_id}/result`);
    expect(result.status).toBe(200);
    expect(result.headers.get("shape")).toBe("[2, 3, 1280, 1280]");
    expect((await result.arrayBuffer()).byteLength).toBe(2 * 3 * 1280 * 1280 * 2);
  });
});
