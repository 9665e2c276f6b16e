import type { ChildProcess } from "node:child_process";
import { InferenceClient } from "@huggingface/inference";
import type { JobObject } from "@hybrid/protocol";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { blobSize, isJpeg, isPng, pngOf } from "./fixtures.ts";
import { finished, getJob, pollJob, readEvents } from "./jobs-client.ts";
import { type Stack, startStack } from "./stack.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

async function imageOf(res: Response) {
  const bytes = Buffer.from(await res.arrayBuffer());
  expect(res.status, bytes.toString().slice(0, 300)).toBe(200);
  return { bytes, meta: await sharp(bytes).metadata() };
}

const t2i = "/v1/text-to-image/sd-tiny";

const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;
const exited = (p: ChildProcess) =>
  alive(p) ? new Promise<void>((r) => p.once("exit", () => r())) : Promise.resolve();

describe("text-to-image", () => {
  it("answers the custom-handler JSON (with a bearer token) with {image: base64}", async () => {
    const res = await post(
      t2i,
      {
        inputs: "a photo of a cat",
        negative_prompt: "blurry",
        height: 128,
        width: 192,
        guidance_scale: 7.5,
        inference_steps: 4,
      },
      { Authorization: "Bearer hf_anything", Accept: "*/*" },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const { image } = (await res.json()) as { image: string };
    const meta = await sharp(Buffer.from(image, "base64")).metadata();
    expect([meta.width, meta.height]).toEqual([192, 128]);
    expect(res.headers.get("x-seed")).toMatch(/^\d+$/);
  });

  it("answers the HF task JSON with image bytes; the same seed gives the same bytes", async () => {
    const body = {
      inputs: "a red car",
      parameters: { width: 128, height: 64, num_inference_steps: 3, seed: 5 },
    };
    const a = await imageOf(await post(t2i, body, { "x-use-cache": "false" }));
    expect(isJpeg(a.bytes)).toBe(true);
    expect([a.meta.width, a.meta.height]).toEqual([128, 64]);
    const b = await imageOf(await post(t2i, body));
    expect(b.bytes.equals(a.bytes)).toBe(true);
    const c = await imageOf(await post(t2i, { ...body, parameters: { ...body.parameters, seed: 6 } }));
    expect(c.bytes.equals(a.bytes)).toBe(false);
    const png = await imageOf(await post(t2i, body, { Accept: "image/png" }));
    expect(isPng(png.bytes)).toBe(true);
  });

  it("works for @huggingface/inference's textToImage and imageToImage with endpointUrl", async () => {
    const client = new InferenceClient();
    const endpointUrl = `${stack.baseUrl}/models/sd-tiny`;
    const blob = await client.textToImage(
      {
        endpointUrl,
        inputs: "a lighthouse",
        parameters: { width: 128, height: 128, num_inference_steps: 2 },
      },
      { outputType: "blob" },
    );
    expect(await blobSize(blob)).toEqual([128, 128]);

    const init = new Blob([await pngOf(96, 64)], { type: "image/png" });
    const out = await client.imageToImage({
      endpointUrl,
      inputs: init,
      parameters: {
        prompt: "make it blue",
        num_inference_steps: 4,
        strength: 0.5,
        target_size: { width: 80, height: 48 },
      },
    } as never);
    expect(await blobSize(out)).toEqual([80, 48]);
    // A bare image (no parameters) is image-to-image too.
    const bare = await client.imageToImage({ endpointUrl, inputs: init });
    expect(await blobSize(bare)).toEqual([96, 64]);
  });
});

describe("every pipeline layout", () => {
  it.each(["sdxl-pipe-tiny", "lcm-tiny"])("%s generates an image of the asked size", async (model) => {
    const res = await post(`/v1/text-to-image/${model}`, {
      inputs: "a castle",
      parameters: { width: 128, height: 64, num_inference_steps: 3, seed: 1 },
    });
    const { meta } = await imageOf(res);
    expect([meta.width, meta.height]).toEqual([128, 64]);
  });
});

describe("generation as a job", () => {
  it("streams progress 1..total, then the result", async () => {
    const res = await post(
      t2i,
      { inputs: "x", parameters: { num_inference_steps: 5, width: 64, height: 64, previews: true } },
      { Prefer: "respond-async" },
    );
    expect(res.status).toBe(202);
    const job = (await res.json()) as JobObject;
    expect(job.kind).toBe("generate");
    // No seed was given: one was drawn, and the job says which.
    expect(job.seed).toBe(Number(res.headers.get("x-seed")));
    const { events } = await readEvents(stack.baseUrl, job.id);
    const progress = events.filter((e) => e.event === "progress");
    // A UNet evaluation per step (PNDM's PLMS runs one more than the steps asked for).
    const total = progress[0]!.data.progress!.total;
    expect(total).toBeGreaterThanOrEqual(5);
    expect(progress.map((e) => e.data.progress?.step)).toEqual(
      Array.from({ length: total }, (_, i) => i + 1),
    );
    expect(progress.every((e) => e.data.progress?.total === total)).toBe(true);
    expect(progress[0]!.data.progress?.preview).toMatch(/^data:image\/jpeg;base64,/);
    expect(events.at(-1)?.event).toBe("succeeded");
    const result = await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/result`);
    expect(result.status).toBe(200);
    expect(result.headers.get("x-seed")).toMatch(/^\d+$/);
  });

  it("truncates an over-long prompt and says so in the job and a header", async () => {
    const prompt = Array.from({ length: 120 }, (_, i) => `word${i}`).join(" ");
    const res = await post(t2i, {
      inputs: prompt,
      parameters: { width: 64, height: 64, num_inference_steps: 1 },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-prompt-truncated")).toBe("true");
    const job = (await (
      await fetch(`${stack.baseUrl}/v1/jobs/${res.headers.get("x-job-id")}`)
    ).json()) as JobObject;
    expect(job.warnings.join(" ")).toMatch(/77 tokens/);
  });

  it("stops a canceled generation within a step", async () => {
    const res = await post(
      t2i,
      { inputs: "x", parameters: { num_inference_steps: 100, width: 512, height: 512 } },
      { Prefer: "respond-async" },
    );
    const job = (await res.json()) as JobObject;
    await pollJob(stack.baseUrl, job.id, (j) => (j.progress?.step ?? 0) >= 1);
    const cancel = await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/cancel`, { method: "POST" });
    expect(cancel.status).toBe(202);
    // The cancel is published before the 202. The job's recorded step may trail the run by one,
    // and the step under way when the cancel arrives still finishes: at most two more.
    const atCancel = (await getJob(stack.baseUrl, job.id)).progress?.step ?? 0;
    const done = await pollJob(stack.baseUrl, job.id, finished, 10_000);
    expect(done.status).toBe("canceled");
    expect(done.progress?.step ?? 0).toBeLessThanOrEqual(atCancel + 2);
    expect(atCancel + 2).toBeLessThan(100);
    // Canceled once, not retried: the worker stopped it, it did not fail.
    expect(done.attempts).toBe(1);
  });
});

describe("bad generation requests", () => {
  it.each([
    [{ inputs: "x", width: 100 }, "width"],
    [{ inputs: "x", parameters: { width: 4096, height: 4096 } }, "width"],
    [{ inputs: "x", parameters: { num_inference_steps: 0 } }, "num_inference_steps"],
    [{ inputs: "x", parameters: { num_inference_steps: 100000 } }, "num_inference_steps"],
    [{ inputs: "x", parameters: { scheduler: "nope" } }, "scheduler"],
    [{ inputs: "" }, "inputs"],
  ])("%j → 400 naming %s", async (body, parameter) => {
    const res = await post(t2i, body);
    expect(res.status).toBe(400);
    const err = (await res.json()) as { code: string; error: string; details: unknown };
    expect(err.code).toBe("invalid_parameter");
    expect(err.error).toContain(parameter);
    expect(res.headers.get("x-job-id")).toBeNull();
  });

  it("refuses a guidance that is not a number, an image that is not one, an unknown model", async () => {
    expect((await post(t2i, { inputs: "x", guidance_scale: "NaN" })).status).toBe(400);
    const notImage = await post("/v1/image-to-image/sd-tiny", {
      inputs: Buffer.from("hello world, not an image").toString("base64"),
    });
    expect(notImage.status).toBe(400);
    expect(((await notImage.json()) as { code: string }).code).toBe("invalid_image");
    expect((await post("/v1/text-to-image/nope", { inputs: "x" })).status).toBe(404);
    expect((await post("/v1/text-to-image/sd-v1-tiny", { inputs: "x" })).status).toBe(400);
  });
});

describe("x-use-cache and x-wait-for-model", () => {
  const seeded = {
    inputs: "a cached cat",
    parameters: { width: 64, height: 64, num_inference_steps: 2, seed: 77 },
  };

  it("answers a seeded request from the cache the second time, unless x-use-cache is false", async () => {
    const first = await post(t2i, seeded);
    const a = Buffer.from(await first.arrayBuffer());
    expect(first.headers.get("x-cache")).toBe("MISS");
    const second = await post(t2i, seeded);
    expect(second.status).toBe(200);
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(second.headers.get("x-job-id")).toBeNull();
    expect(second.headers.get("x-seed")).toBe("77");
    expect(Buffer.from(await second.arrayBuffer()).equals(a)).toBe(true);
    const fresh = await post(t2i, seeded, { "x-use-cache": "false" });
    expect(fresh.headers.get("x-cache")).toBeNull();
    expect(fresh.headers.get("x-job-id")).not.toBeNull();
    expect(Buffer.from(await fresh.arrayBuffer()).equals(a)).toBe(true);
    // Without a seed nothing is cached: every request draws its own.
    const unseeded = await post(t2i, {
      inputs: "a cached cat",
      parameters: { width: 64, height: 64, num_inference_steps: 2 },
    });
    expect(unseeded.headers.get("x-cache")).toBeNull();
  });

  it("503s a known model while no worker serves it, and waits for one with x-wait-for-model: true", async () => {
    const dead = stack.workers.filter(alive);
    for (const w of dead) w.kill("SIGKILL");
    await Promise.all(dead.map(exited));
    // A worker again however this ends, so no test after this one depends on it passing.
    onTestFinished(async () => {
      if (!stack.workers.some(alive)) await stack.addWorker();
    });
    // The directory forgets a dead worker after 3 heartbeats (1 s each here).
    // Probes are async: one that gets in while the dead worker is still listed just waits queued.
    const probe = () =>
      post(
        t2i,
        { inputs: "x", parameters: { width: 64, height: 64, num_inference_steps: 1 } },
        { Prefer: "respond-async" },
      );
    const res = await vi.waitFor(
      async () => {
        const r = await probe();
        expect(r.status).toBe(503);
        return r;
      },
      { timeout: 15_000, interval: 250 },
    );
    const body = (await res.json()) as { error: string; code: string; estimated_time: number };
    expect(body.error).toBe("Model sd-tiny is currently loading");
    expect(body.estimated_time).toBeGreaterThan(0);
    expect(res.headers.get("retry-after")).toBe(String(body.estimated_time));
    // An id no worker ever served stays a 404.
    expect((await post("/v1/text-to-image/never-seen", { inputs: "x" })).status).toBe(404);

    const waiting = post(
      t2i,
      { inputs: "x", parameters: { width: 64, height: 64, num_inference_steps: 1 } },
      { "x-wait-for-model": "true" },
    );
    await stack.addWorker();
    const answered = await waiting;
    expect(answered.status).toBe(200);
  });

  it("gives the same bytes for the same seed from another worker process", async () => {
    const body = {
      inputs: "a red car",
      parameters: { width: 128, height: 64, num_inference_steps: 3, seed: 5 },
    };
    const first = await imageOf(await post(t2i, body, { "x-use-cache": "false" }));
    // A new worker first, then the old ones gone: the second answer can only come from it.
    const old = stack.workers.filter(alive);
    await stack.addWorker();
    for (const w of old) w.kill("SIGKILL");
    await Promise.all(old.map(exited));
    expect(stack.workers.filter(alive)).toHaveLength(1);
    const again = await imageOf(await post(t2i, body, { "x-use-cache": "false" }));
    expect(again.bytes.equals(first.bytes)).toBe(true);
  });
});

describe("GET /v1/models", () => {
  it("lists the pipelines with their tasks, defaults and endpoints", async () => {
    const models = (await (await fetch(`${stack.baseUrl}/v1/models`)).json()) as {
      data: Array<{
        id: string;
        tasks: string[];
        generation?: { defaults: { width: number } };
        endpoints: Record<string, string>;
      }>;
    };
    const sd = models.data.find((m) => m.id === "sd-tiny")!;
    expect(sd.tasks).toEqual(["vae", "text-to-image", "image-to-image"]);
    expect(sd.generation?.defaults.width).toBe(256);
    expect(sd.endpoints["text-to-image"]).toBe("/v1/text-to-image/sd-tiny");
    const vaeOnly = models.data.find((m) => m.id === "sd-v1-tiny")!;
    expect(vaeOnly.tasks).toEqual(["vae"]);
    expect(vaeOnly.generation).toBeUndefined();
  });
});
