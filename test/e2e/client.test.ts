// The TypeScript SDK (@hybrid/client) against a real stack: every call goes through the API, the
// queue and a worker running the ONNX models.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { HybridClient, HybridError, type JobEvent, verifyWebhook } from "@hybrid/client";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { remoteDecode, remoteEncode } from "./diffusers-client.ts";
import { isJpeg, isPng, latents, pngOf } from "./fixtures.ts";
import { type Stack, startStack } from "./stack.ts";

const secret = `whsec_${randomBytes(32).toString("base64")}`;
const hooks: { raw: Buffer; headers: IncomingHttpHeaders }[] = [];
let hookServer: Server;
let hookUrl: string;
let stack: Stack;
let client: HybridClient;

beforeAll(async () => {
  hookServer = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      hooks.push({ raw: Buffer.concat(chunks), headers: req.headers });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, "127.0.0.1", r));
  hookUrl = `http://127.0.0.1:${(hookServer.address() as { port: number }).port}/hook`;
  stack = await startStack({}, { api: { WEBHOOK_SECRET: secret, WEBHOOK_ALLOWED_HOSTS: "127.0.0.1" } });
  client = new HybridClient({ baseUrl: stack.baseUrl });
});
afterAll(async () => {
  await stack?.stop();
  await new Promise((r) => hookServer?.close(r));
});

const SHAPE = [1, 4, 6, 5];
const [H, W] = [SHAPE[2]! * 8, SHAPE[3]! * 8];

async function rejection(p: Promise<unknown>): Promise<HybridError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HybridError);
  return e as HybridError;
}

describe("remoteDecode / remoteEncode", () => {
  it("decodes to uint8 pixels, the same bytes diffusers' request gets", async () => {
    const { values, tensor } = latents(SHAPE, "float16");
    const out = await client.remoteDecode("sd-v1-tiny", {
      tensor: { data: values, shape: SHAPE, dtype: "float16" },
      outputType: "pt",
      partialPostprocess: true,
      scalingFactor: 0.18215,
    });
    expect(out.kind).toBe("tensor");
    if (out.kind !== "tensor" || out.dtype !== "uint8") throw new Error("expected uint8 pixels");
    expect(out.shape).toEqual([1, H, W, 3]);
    expect(out.data).toBeInstanceOf(Uint8Array);
    const reference = await remoteDecode(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode`, {
      tensor,
      output_type: "pt",
      partial_postprocess: true,
      scaling_factor: 0.18215,
    });
    expect(reference.res.status).toBe(200);
    expect(Buffer.from(out.data).equals(Buffer.from(reference.bytes))).toBe(true);
  });

  it("decodes to the raw float16 tensor, widened to float32", async () => {
    const { tensor } = latents(SHAPE);
    const out = await client.remoteDecode("sd-v1-tiny", { tensor, outputType: "pt", scalingFactor: 0.18215 });
    if (out.kind !== "tensor") throw new Error(`expected a tensor, got ${out.kind}`);
    expect([out.dtype, out.shape]).toEqual(["float16", [1, 3, H, W]]);
    expect(out.data).toBeInstanceOf(Float32Array);
    expect(out.data.every(Number.isFinite)).toBe(true);
  });

  it("decodes pil to a JPEG (default) or a PNG", async () => {
    const { values } = latents(SHAPE);
    const jpeg = await client.remoteDecode("sd-v1-tiny", { tensor: { data: values, shape: SHAPE } });
    expect(jpeg.kind).toBe("image");
    if (jpeg.kind !== "image") return;
    expect(jpeg.contentType).toBe("image/jpeg");
    expect(isJpeg(jpeg.bytes)).toBe(true);
    expect(await sharp(jpeg.bytes).metadata()).toMatchObject({ width: W, height: H });
    const png = await client.remoteDecode("sd-v1-tiny", {
      tensor: { data: values, shape: SHAPE },
      imageFormat: "png",
    });
    expect(png.kind === "image" && isPng(png.bytes)).toBe(true);
  });

  it("encodes a PNG to float32 latents, the same values diffusers' request gets", async () => {
    const png = await pngOf(40, 24);
    const out = await client.remoteEncode("sd-v1-tiny", png, { scalingFactor: 0.18215 });
    expect([out.dtype, out.shape]).toEqual(["float32", [1, 4, 3, 5]]);
    expect(out.data).toBeInstanceOf(Float32Array);
    const reference = await remoteEncode(`${stack.baseUrl}/v1/vae/sd-v1-tiny/encode`, png, {
      scaling_factor: 0.18215,
    });
    expect(Array.from(out.data)).toEqual(
      Array.from(new Float32Array(Uint8Array.from(reference.bytes).buffer)),
    );
    // Sampling with a seed is reproducible.
    const a = await client.remoteEncode("sd-v1-tiny", png, { sample: true, seed: 3 });
    const b = await client.remoteEncode("sd-v1-tiny", png, { sample: true, seed: 3 });
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.data)).not.toEqual(Array.from(out.data));
  });
});

describe("textToImage / imageToImage", () => {
  const params = { prompt: "a red car", width: 128, height: 64, numInferenceSteps: 3, seed: 5 };

  it("gives the same bytes for the same seed, and reports the seed", async () => {
    const a = await client.textToImage("sd-tiny", params, { useCache: false });
    const b = await client.textToImage("sd-tiny", params, { useCache: false });
    expect(a.seed).toBe(5);
    expect(a.contentType).toBe("image/jpeg");
    expect(isJpeg(a.bytes)).toBe(true);
    expect(Buffer.from(b.bytes).equals(Buffer.from(a.bytes))).toBe(true);
    expect(a.jobId).not.toBe(b.jobId);
    expect(await sharp(a.bytes).metadata()).toMatchObject({ width: 128, height: 64 });
    const png = await client.textToImage("sd-tiny", { ...params, format: "png", seed: 6 });
    expect(isPng(png.bytes)).toBe(true);
  });

  it("edits an image, resized to targetSize", async () => {
    const out = await client.imageToImage("sd-tiny", {
      image: await pngOf(64, 64),
      prompt: "in the snow",
      strength: 0.5,
      numInferenceSteps: 4,
      targetSize: { width: 96, height: 80 },
      seed: 1,
    });
    expect(out.seed).toBe(1);
    expect(await sharp(out.bytes).metadata()).toMatchObject({ width: 96, height: 80 });
  });
});

describe("jobs", () => {
  it("streams a generation from queued to succeeded, then reads its result", async () => {
    const job = await client.jobs.submitTextToImage("sd-tiny", {
      prompt: "a lighthouse",
      width: 64,
      height: 64,
      numInferenceSteps: 4,
      // Euler runs one UNet step per step asked for (the model's PNDM runs one more).
      scheduler: "euler",
      seed: 11,
      previews: true,
    });
    expect(job.submitted.id).toBe(job.id);
    const events: JobEvent[] = [];
    for await (const e of job.stream()) events.push(e);
    const names = events.map((e) => e.event);
    expect(names).toEqual(["queued", "started", "progress", "progress", "progress", "progress", "succeeded"]);
    const progress = events.filter((e) => e.event === "progress").map((e) => e.job.progress);
    expect(progress.map((p) => [p?.step, p?.total])).toEqual([
      [1, 4],
      [2, 4],
      [3, 4],
      [4, 4],
    ]);
    expect(progress[0]?.preview).toMatch(/^data:image\/jpeg;base64,/);
    expect(events.every((e) => e.job.id === job.id && /^\d+-\d+$/.test(e.id))).toBe(true);

    const result = await job.result();
    expect(result.seed).toBe(11);
    expect(result.jobId).toBe(job.id);
    expect(isJpeg(result.bytes)).toBe(true);
    // The same answer, untyped, by id; and the job, listed.
    const generic = await client.jobs.result(job.id);
    expect(generic.kind === "image" && Buffer.from(generic.bytes).equals(Buffer.from(result.bytes))).toBe(
      true,
    );
    expect((await client.jobs.get(job.id)).status).toBe("succeeded");
    const page = await client.jobs.list({ limit: 100 });
    expect(page.data.map((j) => j.id)).toContain(job.id);

    // Resuming after an event replays only what came after it.
    const rest: string[] = [];
    for await (const e of client.jobs.stream(job.id, { lastEventId: events[4]!.id })) rest.push(e.event);
    expect(rest).toEqual(names.slice(5));
    // Resuming after the terminal event ends at once.
    const none: string[] = [];
    for await (const e of job.stream({ lastEventId: events.at(-1)!.id })) none.push(e.event);
    expect(none).toEqual([]);
  });

  it("waits for a decode job and reads its typed result", async () => {
    const job = await client.jobs.submitDecode("sd-v1-tiny", {
      tensor: latents(SHAPE).tensor,
      outputType: "pt",
      partialPostprocess: true,
    });
    const done = await job.wait({ timeoutMs: 30_000 });
    expect(done.status).toBe("succeeded");
    const out = await job.result();
    expect(out.kind === "tensor" && out.dtype === "uint8" && out.shape).toEqual([1, H, W, 3]);
  });

  it("cancels a long generation within a step", async () => {
    const job = await client.jobs.submitTextToImage("sd-tiny", {
      prompt: "x",
      numInferenceSteps: 100,
      width: 512,
      height: 512,
    });
    const names: string[] = [];
    for await (const e of job.stream()) {
      names.push(e.event);
      if (e.event === "progress" && e.job.progress?.step === 1) {
        const now = await job.cancel();
        expect(["running", "canceled"]).toContain(now.status);
      }
    }
    expect(names.at(-1)).toBe("canceled");
    const done = await job.wait({ timeoutMs: 10_000 });
    expect(done.status).toBe("canceled");
    expect(done.progress?.step ?? 0).toBeLessThan(100);
    const e = await rejection(job.result());
    expect([e.status, e.code]).toEqual([409, "canceled"]);
  });

  it("delivers a signed webhook that verifyWebhook accepts", async () => {
    const job = await client.jobs.submitDecode(
      "sd-v1-tiny",
      { tensor: latents(SHAPE).tensor, outputType: "pt" },
      { webhook: { url: hookUrl } },
    );
    await job.wait({ timeoutMs: 30_000 });
    await expect
      .poll(() => hooks.some((h) => h.raw.includes(job.id)), { timeout: 30_000, interval: 25 })
      .toBe(true);
    const hook = hooks.find((h) => h.raw.includes(job.id));
    expect(hook).toBeDefined();
    const verified = await verifyWebhook(secret, new Uint8Array(hook!.raw), hook!.headers);
    expect([verified.id, verified.status]).toEqual([job.id, "succeeded"]);
    const forged = Buffer.from(hook!.raw.toString().replace('"succeeded"', '"failed"'));
    await expect(verifyWebhook(secret, new Uint8Array(forged), hook!.headers)).rejects.toThrow(/signature/);
  });
});

describe("errors", () => {
  it("are HybridErrors with the service's code and status", async () => {
    const unknown = await rejection(client.remoteDecode("no-such-model", { tensor: latents(SHAPE).tensor }));
    expect([unknown.status, unknown.code]).toEqual([404, "unknown_model"]);
    const size = await rejection(client.textToImage("sd-tiny", { prompt: "x", width: 100 }));
    expect([size.status, size.code]).toEqual([400, "invalid_parameter"]);
    expect(size.details).toEqual({ parameter: "width" });
    expect(size.message).toMatch(/width/);
    const shape = await rejection(
      client.remoteDecode("sd-v1-tiny", {
        tensor: { data: new Float32Array(3 * 4 * 4), shape: [1, 3, 4, 4] },
      }),
    );
    expect([shape.status, shape.code]).toEqual([400, "invalid_shape"]);
    const missing = await rejection(client.jobs.get("00000000-0000-0000-0000-000000000000"));
    expect([missing.status, missing.code]).toEqual([404, "not_found"]);
  });
});
