import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateVaeModel } from "@hybrid/model-tools";
import { type DecodeJob, type EncodeJob, encodeFromFloat32 } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VaeRuntime } from "./vae-runtime.ts";

// Real sessions on generated models: a runtime that batches against one that does not, on the
// same inputs. Every answer must be the same bytes.
let dir: string;
let alone: VaeRuntime;
let batched: VaeRuntime;
const runs: Array<{ entries: number; tasks: number }> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "batcher-"));
  await generateVaeModel({ family: "sd-v1", outDir: join(dir, "sd") });
  await generateVaeModel({ family: "flux", outDir: join(dir, "flux") });
  const sources = [
    { id: "sd", dir: join(dir, "sd") },
    { id: "flux", dir: join(dir, "flux") },
  ];
  const host = { threads: 1, providers: ["cpu" as const], intraOpThreads: 1 };
  alone = await VaeRuntime.open(sources, host);
  batched = await VaeRuntime.open(sources, {
    ...host,
    batching: { maxBatchSize: 4, windowMs: 0, onRun: (entries, tasks) => runs.push({ entries, tasks }) },
  });
}, 120_000);

afterAll(async () => {
  await alone?.close();
  await batched?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const latents = (shape: number[], seed: number) =>
  encodeFromFloat32(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.7 + seed) * 1.5),
    "float32",
  );
const decodeJob = (shape: number[], output: DecodeJob["output"], model = "sd"): DecodeJob => ({
  kind: "decode",
  model,
  input: "unused",
  shape,
  dtype: "float32",
  scaling: { scale: 0.18215, shift: 0 },
  packed: null,
  output,
});
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe("dynamic batching", () => {
  it("answers 10 concurrent decodes exactly as alone, in batches of at most 4 entries", async () => {
    runs.length = 0;
    const jobs = Array.from({ length: 10 }, (_, k) => ({
      job: decodeJob(k % 3 === 0 ? [2, 4, 6, 5] : [1, 4, 6, 5], { kind: "uint8" }),
      input: latents(k % 3 === 0 ? [2, 4, 6, 5] : [1, 4, 6, 5], k),
    }));
    const together = await Promise.all(jobs.map((j) => batched.decode(j.job, j.input)));
    for (const [k, j] of jobs.entries()) {
      const one = await alone.decode(j.job, j.input);
      expect(together[k]!.shape).toEqual(one.shape);
      expect(same(together[k]!.bytes, one.bytes)).toBe(true);
    }
    // The first runs alone (a thread was free); the rest queued behind it and ran together.
    expect(runs.some((r) => r.tasks > 1)).toBe(true);
    expect(Math.max(...runs.map((r) => r.entries))).toBeLessThanOrEqual(4);
    expect(runs.reduce((n, r) => n + r.tasks, 0)).toBe(10);
  });

  it("never mixes shapes, outputs or models in one batch, and still answers each exactly", async () => {
    runs.length = 0;
    const jobs = [
      { job: decodeJob([1, 4, 6, 5], { kind: "uint8" }), input: latents([1, 4, 6, 5], 1) },
      { job: decodeJob([1, 4, 6, 5], { kind: "raw", dtype: "float16" }), input: latents([1, 4, 6, 5], 2) },
      { job: decodeJob([1, 4, 5, 6], { kind: "uint8" }), input: latents([1, 4, 5, 6], 3) },
      { job: decodeJob([1, 4, 6, 5], { kind: "image", format: "png" }), input: latents([1, 4, 6, 5], 4) },
      { job: decodeJob([2, 4, 6, 5], { kind: "image", format: "png" }), input: latents([2, 4, 6, 5], 5) },
      { job: decodeJob([1, 16, 6, 5], { kind: "uint8" }, "flux"), input: latents([1, 16, 6, 5], 6) },
      { job: decodeJob([1, 4, 6, 5], { kind: "uint8" }), input: latents([1, 4, 6, 5], 7) },
    ];
    const together = await Promise.all(jobs.map((j) => batched.decode(j.job, j.input)));
    for (const [k, j] of jobs.entries()) {
      const one = await alone.decode(j.job, j.input);
      expect([together[k]!.contentType, together[k]!.shape]).toEqual([one.contentType, one.shape]);
      expect(same(together[k]!.bytes, one.bytes)).toBe(true);
    }
    // Only the two uint8 [*, 4, 6, 5] decodes and the two PNG ones (an image answer decodes
    // one latent) could share a run.
    expect(runs.reduce((n, r) => n + r.tasks, 0)).toBe(7);
    expect(Math.max(...runs.map((r) => r.tasks))).toBeLessThanOrEqual(2);
  });

  it("batches encodes with each job's own sampling seed", async () => {
    runs.length = 0;
    const shape = [1, 3, 16, 16];
    const jobs = Array.from({ length: 5 }, (_, k) => ({
      job: {
        kind: "encode",
        model: "flux",
        input: "unused",
        tensor: { shape, dtype: "float32" },
        scaling: { scale: 0.3611, shift: 0.1159 },
        sample: true,
        seed: 100 + k,
        outputDtype: "float32",
      } satisfies EncodeJob,
      input: latents(shape, k),
    }));
    const together = await Promise.all(jobs.map((j) => batched.encode(j.job, j.input)));
    for (const [k, j] of jobs.entries()) {
      const one = await alone.encode(j.job, j.input);
      expect(same(together[k]!.bytes, one.bytes)).toBe(true);
    }
    expect(runs.some((r) => r.tasks > 1)).toBe(true);
  });
});
