// Every resource a request can claim is bounded before any work starts (issue 13, items 2, 3
// and 18): text fields and bodies per route, a job's total output, and error messages that say
// what to do. Refusals come before a job exists; a job the worker finds too large fails once.
import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pythonQuery } from "./diffusers-client.ts";
import { finished, pollJob } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

/** The workers' answer cap: above the small tensor below (12 KiB), far under a 768² PNG of noise. */
const WORKER_MAX_OUTPUT_BYTES = 16 * 1024;

let stack: Stack;
let queues: Queues;
beforeAll(async () => {
  // Only the workers get the small answer cap: the API's default lets the PNG through
  // admission (its size is known only once encoded), so the worker is the one to refuse it.
  stack = await startStack({}, { worker: { MAX_OUTPUT_BYTES: String(WORKER_MAX_OUTPUT_BYTES) } });
  queues = new Queues(REDIS_URL, stack.prefix);
});
afterAll(async () => {
  await queues?.close();
  await stack?.stop();
});

/** Jobs ever added to a queue (waiting, active, done or failed): 0 means nothing was enqueued. */
async function jobsIn(kind: "decode" | "generate", model: string): Promise<number> {
  const counts = await queues.queue(jobCatalog.queue(kind, model)).getJobCounts();
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

async function postJson(path: string, body: unknown) {
  const res = await fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    body: (await res.json()) as { error: string; code: string; details?: unknown },
  };
}

async function decode(model: string, query: Record<string, unknown>, body: Uint8Array, headers = {}) {
  const res = await fetch(`${stack.baseUrl}/v1/vae/${model}/decode?${pythonQuery(query)}`, {
    method: "POST",
    headers: { "Content-Type": "tensor/binary", ...headers },
    body,
  });
  const text = await res.text();
  return { res, status: res.status, text, json: () => JSON.parse(text) as { error: string; code: string } };
}

describe("text and body limits of generations", () => {
  it("refuses a 64 KiB negative_prompt, as a string or an array, naming it and the limit, before any job", async () => {
    const long = "x".repeat(64 * 1024);
    for (const [path, body, field] of [
      ["/v1/text-to-image/sd-tiny", { inputs: "a cat", negative_prompt: long }, "negative_prompt"],
      [
        "/models/sd-tiny",
        { inputs: "a cat", parameters: { negative_prompt: Array.from({ length: 16_384 }, () => "ugly") } },
        "parameters.negative_prompt",
      ],
      [
        "/v1/image-to-image/sd-tiny",
        { inputs: "iVBORw0KGgo=", parameters: { prompt: "a cat", negative_prompt: long } },
        "parameters.negative_prompt",
      ],
    ] as const) {
      const r = await postJson(path, body);
      expect(r.status, path).toBe(400);
      expect(r.body.code).toBe("invalid_parameter");
      expect(r.body.error).toContain(`Invalid ${field}:`);
      expect(r.body.error).toContain("limit of 4000 (MAX_TEXT_CHARS)");
    }
    expect(await jobsIn("generate", "sd-tiny")).toBe(0);
  });

  it("holds JSON without an image to MAX_JSON_BODY_BYTES on every route (413), before any job", async () => {
    // A text-to-image body whose fields each fit, 1 MiB in all.
    const padded = {
      inputs: "a cat",
      parameters: { seed: 1 },
      extra: Array.from({ length: 200_000 }, () => "abc"),
    };
    for (const path of ["/v1/text-to-image/sd-tiny", "/models/sd-tiny"]) {
      const r = await postJson(path, padded);
      expect(r.status, path).toBe(413);
      expect(r.body.code).toBe("payload_too_large");
      expect(r.body.error).toContain("262144 bytes");
      expect(r.body.error).toContain("MAX_JSON_BODY_BYTES");
    }
    expect(await jobsIn("generate", "sd-tiny")).toBe(0);
  });

  it("still generates with a negative prompt right at the limit (an array, joined)", async () => {
    // 800 entries of 3 characters joined by ", ": 800 × 3 + 799 × 2 = 3998 characters.
    const negative = Array.from({ length: 800 }, () => "bad");
    const res = await fetch(`${stack.baseUrl}/v1/text-to-image/sd-tiny`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "image/jpeg" },
      body: JSON.stringify({
        inputs: "a cat",
        parameters: { negative_prompt: negative, width: 64, height: 64, num_inference_steps: 2, seed: 3 },
      }),
    });
    expect(res.status, res.status === 200 ? "" : await res.text()).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/jpeg");
  });
});

describe("per-job output caps", () => {
  it("refuses shape=16,4,256,256 (16 × 2048²) as a tensor at admission, naming the pixel limit", async () => {
    const shape = [16, 4, 256, 256];
    const r = await decode(
      "sd-v1-tiny",
      { shape, dtype: "float16", output_type: "pt" },
      new Uint8Array(16 * 4 * 256 * 256 * 2),
    );
    expect(r.status, r.text).toBe(413);
    const body = r.json();
    expect(body.code).toBe("too_large");
    expect(body.error).toContain("MAX_JOB_PIXELS");
    expect(body.error).toContain(String(16 * 1024 * 1024));
    expect(await jobsIn("decode", "sd-v1-tiny")).toBe(0);
  });

  it("refuses a video latent whose frames together are over the cap (each frame and the frame count within theirs)", async () => {
    // f = 33 → 129 frames (MAX_FRAMES) of 512² (under 2048²): 33.8 Mi pixels.
    const shape = [1, 16, 33, 64, 64];
    for (const output_type of ["mp4", "pt"]) {
      const r = await decode(
        "hunyuan-video-tiny",
        { shape, dtype: "float16", output_type },
        new Uint8Array(16 * 33 * 64 * 64 * 2),
      );
      expect(r.status, r.text).toBe(413);
      expect(r.json()).toMatchObject({ code: "too_large" });
      expect(r.json().error).toContain("129 image(s) of 512x512");
      expect(r.json().error).toContain("MAX_JOB_PIXELS");
    }
    expect(await jobsIn("decode", "hunyuan-video-tiny")).toBe(0);
  });

  it("fails a job whose encoded answer is over the worker's MAX_OUTPUT_BYTES once, as a 413, never retried", async () => {
    // A 768² PNG of noise is far over 16 KiB; its size is only known once encoded.
    const shape = [1, 4, 96, 96];
    const noise = new Float32Array(4 * 96 * 96).map((_, i) => Math.sin(i * 12.9898) * 3);
    const r = await decode(
      "sd-v1-tiny",
      { shape, dtype: "float32", image_format: "png" },
      new Uint8Array(noise.buffer),
      { Prefer: "respond-async", Accept: "image/png" },
    );
    expect(r.status, r.text).toBe(202);
    const { id } = JSON.parse(r.text) as JobObject;
    const job = await pollJob(stack.baseUrl, id, finished);
    expect(job.status).toBe("failed");
    expect(job.error?.code).toBe("too_large");
    expect(job.error?.message).toContain("MAX_OUTPUT_BYTES");
    // JOB_ATTEMPTS is 3: a retried failure would show more tries.
    expect(job.attempts).toBe(1);
    // A small answer under the same cap is fine.
    const ok = await decode(
      "sd-v1-tiny",
      { shape: [1, 4, 8, 8], dtype: "float32", output_type: "pt", partial_postprocess: true },
      new Uint8Array(4 * 8 * 8 * 4),
    );
    expect(ok.status).toBe(200);
  });
});

describe("error messages that say what to do", () => {
  it("a decode without shape says it is required and how to send it", async () => {
    const r = await decode("sd-v1-tiny", { dtype: "float32" }, new Uint8Array(64));
    expect(r.status).toBe(400);
    const body = r.json();
    expect(body.code).toBe("invalid_shape");
    expect(body.error).toMatch(/^Missing shape: .*required/);
    expect(body.error).toContain("shape=1&shape=4&shape=64&shape=64");
    expect(body.error).toContain("shape=1,4,64,64");
  });

  it("a channel mismatch names the channels, even when the body length is off too", async () => {
    // Flux-style 16-channel shape, with a body of 4 channels' worth.
    const r = await decode(
      "sd-v1-tiny",
      { shape: [1, 16, 8, 8], dtype: "float32" },
      new Uint8Array(4 * 8 * 8 * 4),
    );
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ code: "invalid_shape" });
    expect(r.json().error).toContain("expects 4 latent channels, got 16");
  });

  it("a missing inputs says it is the prompt and required", async () => {
    const r = await postJson("/v1/text-to-image/sd-tiny", { parameters: { negative_prompt: "blurry" } });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe("invalid_parameter");
    expect(r.body.error).toMatch(/^Missing inputs: it is the prompt, and it is required/);
  });
});
