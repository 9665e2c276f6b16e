// Flux (schnell, dev) and SD3 end to end, on the generated tiny exports with optimum's layout,
// served under Hub-style ids: both JSON shapes, @huggingface/inference, image-to-image, async
// jobs with SSE previews, cancel, and the same seed giving the same bytes on another worker.
import { join } from "node:path";
import { InferenceClient } from "@huggingface/inference";
import type { JobObject, ModelList } from "@hybrid/protocol";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stop } from "../../scripts/lib.ts";
import { blobSize, isJpeg, pngOf } from "./fixtures.ts";
import { finished, getJob, pollJob, readEvents } from "./jobs-client.ts";
import { type Stack, startStack, TEST_MODELS_DIR } from "./stack.ts";

const MODELS = {
  "black-forest-labs/FLUX.1-schnell": "flux-schnell-tiny",
  "black-forest-labs/FLUX.1-dev": "flux-dev-tiny",
  "stabilityai/stable-diffusion-3.5-medium": "sd3-tiny",
} as const;
type Repo = keyof typeof MODELS;
const REPOS = Object.keys(MODELS) as Repo[];

let stack: Stack;
beforeAll(async () => {
  const models = REPOS.map((repo) => `${repo}=${join(TEST_MODELS_DIR, MODELS[repo])}`).join(",");
  stack = await startStack({}, { worker: { MODELS: models } });
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

const small = { width: 64, height: 96, num_inference_steps: 3 };

describe("Flux and SD3 text-to-image under Hub-style ids", () => {
  it("lists each model with its family's defaults and 16-pixel sizes", async () => {
    const list = (await (await fetch(`${stack.baseUrl}/v1/models`)).json()) as ModelList;
    const byId = new Map(list.data.map((m) => [m.id, m]));
    const schnell = byId.get("black-forest-labs/FLUX.1-schnell")?.generation;
    expect(schnell?.defaults).toMatchObject({
      num_inference_steps: 4,
      scheduler: "flow_match_euler",
      width: 1024,
    });
    expect(schnell?.size_multiple).toBe(16);
    expect(byId.get("black-forest-labs/FLUX.1-dev")?.generation?.defaults).toMatchObject({
      num_inference_steps: 28,
      guidance_scale: 3.5,
    });
    expect(byId.get("stabilityai/stable-diffusion-3.5-medium")?.generation?.defaults).toMatchObject({
      num_inference_steps: 28,
      guidance_scale: 7,
      width: 256,
    });
  });

  it.each(REPOS)("%s: HF task JSON answers image bytes; the handler shape answers {image}", async (repo) => {
    const a = await imageOf(
      await post(`/v1/text-to-image/${repo}`, { inputs: "a fox", parameters: { ...small, seed: 3 } }),
    );
    expect(isJpeg(a.bytes)).toBe(true);
    expect([a.meta.width, a.meta.height]).toEqual([64, 96]);
    const b = await imageOf(
      await post(`/v1/text-to-image/${repo}`, { inputs: "a fox", parameters: { ...small, seed: 3 } }),
    );
    expect(b.bytes.equals(a.bytes)).toBe(true);
    const handler = await post(`/models/${repo}`, { inputs: "a fox", ...small, seed: 3 });
    expect(handler.status).toBe(200);
    const { image } = (await handler.json()) as { image: string };
    expect(Buffer.from(image, "base64").equals(a.bytes)).toBe(true);
    expect(handler.headers.get("x-seed")).toBe("3");
  });

  it.each(REPOS)(
    "%s: @huggingface/inference textToImage and imageToImage at {base}/models/{repo id}",
    async (repo) => {
      const client = new InferenceClient();
      const endpointUrl = `${stack.baseUrl}/models/${repo}`;
      const blob = await client.textToImage(
        {
          endpointUrl,
          inputs: "a lighthouse",
          parameters: { width: 96, height: 64, num_inference_steps: 2 },
        },
        { outputType: "blob" },
      );
      expect(await blobSize(blob)).toEqual([96, 64]);
      const init = new Blob([await pngOf(80, 48)], { type: "image/png" });
      const out = await client.imageToImage({
        endpointUrl,
        inputs: init,
        parameters: {
          prompt: "make it blue",
          num_inference_steps: 4,
          strength: 0.5,
          target_size: { width: 40, height: 24 },
        },
      } as never);
      expect(await blobSize(out)).toEqual([40, 24]);
      // A bare image: generated at the image's size in whole 16-pixel patches.
      const bare = await client.imageToImage({
        endpointUrl,
        inputs: new Blob([await pngOf(72, 56)], { type: "image/png" }),
      });
      expect(await blobSize(bare)).toEqual([64, 48]);
    },
  );

  it("refuses sizes that are not whole 16-pixel patches, and a T5 length over 512", async () => {
    for (const [parameters, name] of [
      [{ width: 72, height: 64 }, "width"],
      [{ width: 64, height: 64, max_sequence_length: 513 }, "max_sequence_length"],
    ] as const) {
      const res = await post("/v1/text-to-image/black-forest-labs/FLUX.1-dev", { inputs: "x", parameters });
      expect(res.status).toBe(400);
      const err = (await res.json()) as { code: string; error: string };
      expect(err.code).toBe("invalid_parameter");
      expect(err.error).toContain(name);
    }
  });
});

describe("Flux and SD3 jobs", () => {
  it.each(["black-forest-labs/FLUX.1-dev", "stabilityai/stable-diffusion-3.5-medium"] as const)(
    "%s streams progress with previews, then the result",
    async (repo) => {
      const res = await post(
        `/v1/text-to-image/${repo}`,
        { inputs: "x", parameters: { num_inference_steps: 4, width: 64, height: 64, previews: true } },
        { Prefer: "respond-async" },
      );
      expect(res.status).toBe(202);
      const job = (await res.json()) as JobObject;
      const { events } = await readEvents(stack.baseUrl, job.id);
      const progress = events.filter((e) => e.event === "progress");
      expect(progress.map((e) => e.data.progress?.step)).toEqual([1, 2, 3, 4]);
      const previews = progress.map((e) => e.data.progress?.preview);
      expect(previews.every((p) => p?.startsWith("data:image/jpeg;base64,"))).toBe(true);
      // 64 px at 8 pixels per latent: 8×8 previews, and they change as the image forms.
      const first = await sharp(Buffer.from(previews[0]!.split(",")[1]!, "base64")).metadata();
      expect([first.width, first.height]).toEqual([8, 8]);
      expect(previews[0]).not.toBe(previews[3]);
      expect(events.at(-1)?.event).toBe("succeeded");
    },
  );

  it("stops a canceled Flux generation within a step", async () => {
    const res = await post(
      "/v1/text-to-image/black-forest-labs/FLUX.1-dev",
      { inputs: "x", parameters: { num_inference_steps: 100, width: 1024, height: 1024 } },
      { Prefer: "respond-async" },
    );
    const job = (await res.json()) as JobObject;
    await pollJob(stack.baseUrl, job.id, (j) => (j.progress?.step ?? 0) >= 1);
    const cancel = await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/cancel`, { method: "POST" });
    expect(cancel.status).toBe(202);
    const atCancel = (await getJob(stack.baseUrl, job.id)).progress?.step ?? 0;
    const done = await pollJob(stack.baseUrl, job.id, finished, 30_000);
    expect(done.status).toBe("canceled");
    expect(done.progress?.step ?? 0).toBeLessThanOrEqual(atCancel + 2);
    expect(atCancel + 2).toBeLessThan(100);
  });

  it("gives the same bytes for the same seed on another worker", async () => {
    const body = { inputs: "a red car", parameters: { ...small, seed: 21 } };
    const path = "/v1/text-to-image/black-forest-labs/FLUX.1-schnell";
    const first = await imageOf(await post(path, body, { "x-use-cache": "false" }));
    const second = await stack.addWorker();
    // The first worker leaves: the next answer can only come from the new one.
    await stop(stack.worker);
    const again = await imageOf(await post(path, body, { "x-use-cache": "false" }));
    expect(again.bytes.equals(first.bytes)).toBe(true);
    expect(second.exitCode).toBeNull();
  });
});
