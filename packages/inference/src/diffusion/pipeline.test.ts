import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageChannel } from "node:worker_threads";
import { generatePipelineModel } from "@hybrid/model-tools";
import { AppError, type GenerateParams } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectModelDir, type PipelineDir } from "../model-dir.ts";
import type { GenerateTask, ProgressMessage } from "../sessions/thread-protocol.ts";
import { generate } from "./pipeline.ts";

const settings = { providers: ["cpu" as const], intraOpThreads: 1 };
let root: string;
const files: Record<"sd" | "sdxl" | "lcm", PipelineDir> = {} as never;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "pipeline-"));
  await generatePipelineModel({ kind: "sd-v1", outDir: join(root, "sd") });
  await generatePipelineModel({ kind: "sdxl", outDir: join(root, "sdxl"), ioDtype: "float16" });
  await generatePipelineModel({ kind: "lcm", outDir: join(root, "lcm") });
  for (const k of ["sd", "sdxl", "lcm"] as const) {
    const dir = await detectModelDir(join(root, k));
    if (dir.kind !== "pipeline") throw new Error(`${k} is not a pipeline`);
    files[k] = dir;
  }
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const params = (p: Partial<GenerateParams> = {}): GenerateParams => ({
  task: "text-to-image",
  prompt: "a photo of a cat",
  negative_prompt: "",
  width: 64,
  height: 96,
  num_inference_steps: 4,
  guidance_scale: 7.5,
  scheduler: "euler",
  strength: 1,
  seed: 42,
  previews: false,
  target_size: null,
  ...p,
});

const task = (
  f: PipelineDir,
  p: Partial<GenerateParams> = {},
  extra: Partial<GenerateTask> = {},
): GenerateTask => ({
  op: "generate",
  model: "test",
  files: f,
  params: params(p),
  width: p.width ?? 64,
  height: p.height ?? 96,
  init: null,
  progress: null,
  cancel: null,
  ...extra,
});

const differ = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0;

describe("generate", () => {
  it.each(["sd", "sdxl", "lcm"] as const)(
    "%s: an image of the asked size, the same for the same seed",
    async (k) => {
      const a = await generate(task(files[k]), settings);
      expect([a.width, a.height, a.data.length]).toEqual([64, 96, 64 * 96 * 3]);
      const b = await generate(task(files[k]), settings);
      expect(differ(a.data, b.data)).toBe(false);
      const c = await generate(task(files[k], { seed: 43 }), settings);
      expect(differ(a.data, c.data)).toBe(true);
    },
  );

  it("changes with the prompt, negative prompt, steps, guidance and scheduler", async () => {
    const base = (await generate(task(files.sd), settings)).data;
    for (const p of [
      { prompt: "a red car" },
      { negative_prompt: "blurry" },
      { num_inference_steps: 5 },
      { guidance_scale: 3 },
      { scheduler: "ddim" as const },
      { scheduler: "dpmpp_2m_karras" as const },
      { scheduler: "euler_a" as const },
      { scheduler: "pndm" as const },
    ]) {
      expect(differ(base, (await generate(task(files.sd, p), settings)).data), JSON.stringify(p)).toBe(true);
    }
  });

  it("reports progress 1..total, with previews when asked", async () => {
    const { port1, port2 } = new MessageChannel();
    const seen: ProgressMessage[] = [];
    port2.on("message", (m: ProgressMessage) => seen.push(m));
    await generate(task(files.sd, { num_inference_steps: 6, previews: true }, { progress: port1 }), settings);
    // Messages arrive after the result: the last one is marked.
    await expect.poll(() => seen.at(-1)?.done).toBe(true);
    port2.close();
    expect(seen.filter((m) => !m.done).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen.at(-1)?.done).toBe(true);
    expect(seen.every((m) => m.total === 6)).toBe(true);
    expect(seen[0]!.preview).toMatchObject({ width: 8, height: 12 });
    expect(seen[0]!.preview!.data.length).toBe(8 * 12 * 3);
  });

  it.each([
    ["pndm", {}, 6],
    ["pndm", { strength: 0.5 }, 3],
    ["euler", { strength: 0.5 }, 3],
    ["dpmpp_2m_karras", {}, 6],
  ] as const)(
    "%s %j: reports the steps asked for, whatever the denoiser evaluations",
    async (scheduler, p, total) => {
      const { port1, port2 } = new MessageChannel();
      const seen: ProgressMessage[] = [];
      port2.on("message", (m: ProgressMessage) => seen.push(m));
      const init = "strength" in p ? await generate(task(files.sd), settings) : null;
      await generate(
        task(
          files.sd,
          { num_inference_steps: 6, scheduler, ...p, ...(init ? { task: "image-to-image" as const } : {}) },
          { progress: port1, ...(init ? { init: { data: init.data, width: 64, height: 96 } } : {}) },
        ),
        settings,
      );
      await expect.poll(() => seen.at(-1)?.done).toBe(true);
      port2.close();
      expect(seen.filter((m) => !m.done).map((m) => m.step)).toEqual(
        Array.from({ length: total }, (_, i) => i + 1),
      );
      expect(seen.every((m) => m.total === total)).toBe(true);
    },
  );

  it("shapes its latents by the model's geometry, not by SD 1.x's constants", async () => {
    // The same graphs told that the VAE's factor is 16: latents (and previews) at 1/16 of the
    // image; the decoder, which really upsamples 8x, then answers half the asked size.
    const coarse: PipelineDir = { ...files.sd, geometry: { ...files.sd.geometry, spatialFactor: 16 } };
    const { port1, port2 } = new MessageChannel();
    const previews: Array<{ width: number; height: number }> = [];
    port2.on("message", (m: ProgressMessage) => {
      if (m.preview) previews.push({ width: m.preview.width, height: m.preview.height });
    });
    const out = await generate(
      task(coarse, { width: 128, height: 192, previews: true, num_inference_steps: 2 }, { progress: port1 }),
      settings,
    );
    await expect.poll(() => previews.length).toBe(2);
    port2.close();
    expect(previews[0]).toEqual({ width: 128 / 16, height: 192 / 16 });
    expect(out.data.length).toBe((128 / 16) * 8 * (192 / 16) * 8 * 3);
  });

  it("stops at the next step once the cancel flag is set", async () => {
    const cancel = new Int32Array(new SharedArrayBuffer(4));
    const { port1, port2 } = new MessageChannel();
    const steps: number[] = [];
    let canceledAt: number | null = null;
    let drained = false;
    port2.on("message", (m: ProgressMessage | "drained") => {
      if (m === "drained") {
        drained = true;
        return;
      }
      steps.push(m.step);
      // Messages arrive between awaits: the flag goes up on the first report the test sees.
      if (canceledAt === null) {
        canceledAt = m.step;
        Atomics.store(cancel, 0, 1);
      }
    });
    const err = await generate(
      task(files.sd, { num_inference_steps: 20 }, { progress: port1, cancel }),
      settings,
    ).catch((e: unknown) => e);
    // A port delivers in order: once this arrives, every report of the run has been seen.
    port1.postMessage("drained");
    await expect.poll(() => drained).toBe(true);
    port2.close();
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("canceled");
    // The run stopped at the step after the cancel, give or take one.
    expect(canceledAt).not.toBeNull();
    expect(Math.max(...steps)).toBeGreaterThanOrEqual(canceledAt!);
    expect(Math.max(...steps)).toBeLessThanOrEqual(canceledAt! + 2);
  });

  it("image-to-image: strength 0 is the VAE round trip, and strength 1 ignores the image", async () => {
    const width = 64;
    const height = 64;
    const img = new Uint8Array(width * height * 3);
    for (let i = 0; i < img.length; i++) img[i] = (i * 7) & 0xff;
    const init = { data: img, width, height };
    const i2i = (strength: number, seed = 1) =>
      generate(task(files.sd, { task: "image-to-image", strength, width, height, seed }, { init }), settings);
    const zero = await i2i(0);
    const zeroAgain = await i2i(0, 99);
    // No denoising step runs: the result does not depend on the seed.
    expect(differ(zero.data, zeroAgain.data)).toBe(false);
    const full = await i2i(1);
    const otherImage = await generate(
      task(
        files.sd,
        { task: "image-to-image", strength: 1, width, height, seed: 1 },
        { init: { ...init, data: img.map((v) => 255 - v) } },
      ),
      settings,
    );
    // At strength 1 the init image is noise-drowned: a different image hardly matters.
    const diff = full.data.reduce((a, v, i) => a + Math.abs(v - otherImage.data[i]!), 0) / full.data.length;
    const diffZero = zero.data.reduce((a, v, i) => a + Math.abs(v - full.data[i]!), 0) / full.data.length;
    expect(diff).toBeLessThan(diffZero);
  });
});
