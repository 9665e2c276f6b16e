// The Flux and SD3 pipelines on tiny generated exports with optimum's layout and I/O names:
// their conditioning reaches the transformer (each input changes the image), the same seed
// gives the same bytes, previews and image-to-image follow the flow-matching schedule.
import { cp, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageChannel } from "node:worker_threads";
import { generatePipelineModel, moveWeightsToExternalData } from "@hybrid/model-tools";
import type { GenerateParams } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectModelDir, type PipelineDir } from "../model-dir.ts";
import type { GenerateTask, ProgressMessage } from "../sessions/thread-protocol.ts";
import { generate } from "./pipeline.ts";

const settings = { providers: ["cpu" as const], intraOpThreads: 1 };
let root: string;
const kinds = ["flux-schnell", "flux-dev", "sd3"] as const;
type Kind = (typeof kinds)[number] | "sd3-no-t5";
const files = {} as Record<Kind, PipelineDir>;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "flow-pipeline-"));
  for (const kind of kinds) {
    await generatePipelineModel({ kind, outDir: join(root, kind) });
    const dir = await detectModelDir(join(root, kind));
    if (dir.kind !== "pipeline") throw new Error(`${kind} is not a pipeline`);
    files[kind] = dir;
  }
  // SD3 runs without its T5 encoder, as diffusers allows (text_encoder_3=None).
  const sd3 = files.sd3;
  files["sd3-no-t5"] = {
    ...sd3,
    text: sd3.text.filter((t) => t.component !== "text_encoder_3"),
    missingText: ["text_encoder_3"],
  };
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
  num_inference_steps: 3,
  guidance_scale: 4,
  scheduler: null,
  strength: 1,
  seed: 42,
  previews: false,
  target_size: null,
  ...p,
});

const task = (k: Kind, p: Partial<GenerateParams> = {}, extra: Partial<GenerateTask> = {}): GenerateTask => ({
  op: "generate",
  model: k,
  files: files[k],
  params: params(p),
  width: p.width ?? 64,
  height: p.height ?? 96,
  init: null,
  progress: null,
  cancel: null,
  ...extra,
});

const run = async (k: Kind, p: Partial<GenerateParams> = {}, extra: Partial<GenerateTask> = {}) =>
  (await generate(task(k, p, extra), settings)).data;
const differ = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0;

describe("Flux and SD3 generation", () => {
  it.each(["flux-schnell", "flux-dev", "sd3", "sd3-no-t5"] as const)(
    "%s: an image of the asked size, the same for the same seed, another for another seed",
    async (k) => {
      const a = await generate(task(k), settings);
      expect([a.width, a.height, a.data.length]).toEqual([64, 96, 64 * 96 * 3]);
      expect(differ(a.data, await run(k))).toBe(false);
      expect(differ(a.data, await run(k, { seed: 7 }))).toBe(true);
      expect(differ(a.data, await run(k, { prompt: "a red car" }))).toBe(true);
    },
  );

  it("Flux dev: guidance is the transformer's input; schnell has none; neither uses a negative prompt", async () => {
    const dev = await run("flux-dev");
    expect(differ(dev, await run("flux-dev", { guidance_scale: 2 }))).toBe(true);
    expect(differ(dev, await run("flux-dev", { negative_prompt: "blurry" }))).toBe(false);
    const schnell = await run("flux-schnell");
    expect(differ(schnell, await run("flux-schnell", { guidance_scale: 2 }))).toBe(false);
  });

  it("Flux: the T5 sequence length is the request's when given, and a prompt cut by T5 says so", async () => {
    const base = await run("flux-schnell");
    expect(differ(base, await run("flux-schnell", { max_sequence_length: 16 }))).toBe(true);
    const long = Array.from({ length: 6 }, () => "a photo of a cat").join(" ");
    const cut = await generate(task("flux-schnell", { prompt: long, max_sequence_length: 16 }), settings);
    expect(cut).toMatchObject({ truncated: true, truncatedBy: "T5: 16 tokens" });
    const whole = await generate(
      task("flux-schnell", { prompt: "a cat", max_sequence_length: 16 }),
      settings,
    );
    expect(whole.truncated).toBe(false);
  });

  it("SD3: classifier-free guidance with the negative prompt above scale 1, none at 1", async () => {
    const base = await run("sd3");
    expect(differ(base, await run("sd3", { negative_prompt: "blurry" }))).toBe(true);
    expect(differ(base, await run("sd3", { guidance_scale: 6 }))).toBe(true);
    const plain = await run("sd3", { guidance_scale: 1 });
    expect(differ(plain, await run("sd3", { guidance_scale: 1, negative_prompt: "blurry" }))).toBe(false);
  });

  it("refuses an SD scheduler for a flow-matching model", async () => {
    await expect(run("flux-schnell", { scheduler: "euler" })).rejects.toMatchObject({
      code: "invalid_parameter",
    });
    expect(differ(await run("sd3"), await run("sd3", { scheduler: "flow_match_euler" }))).toBe(false);
  });

  it.each(["flux-dev", "sd3"] as const)("%s: progress 1..total with 16-channel previews", async (k) => {
    const { port1, port2 } = new MessageChannel();
    const seen: ProgressMessage[] = [];
    port2.on("message", (m: ProgressMessage) => seen.push(m));
    await generate(task(k, { num_inference_steps: 4, previews: true }, { progress: port1 }), settings);
    await expect.poll(() => seen.at(-1)?.done).toBe(true);
    port2.close();
    const steps = seen.filter((m) => !m.done);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(steps[0]!.preview).toMatchObject({ width: 8, height: 12 });
    // The preview changes as the latents are denoised.
    expect(differ(steps[0]!.preview!.data, steps[3]!.preview!.data)).toBe(true);
  });

  it.each(["flux-dev", "sd3"] as const)(
    "%s image-to-image: strength 0 is the VAE round trip, lower strengths stay closer to it, 1 ignores the image",
    async (k) => {
      // A gradient: nothing like what the random-weight models generate.
      const gradient = new Uint8Array(64 * 96 * 3).map((_, i) => (i * 7) % 256);
      const img = (strength: number, data = gradient) =>
        run(
          k,
          { task: "image-to-image", strength, num_inference_steps: 10 },
          { init: { data, width: 64, height: 96 } },
        );
      const round = await img(0);
      const distance = (a: Uint8Array) => a.reduce((s, v, i) => s + Math.abs(v - round[i]!), 0) / a.length;
      const low = await img(0.3);
      const high = await img(0.9);
      expect(differ(round, low)).toBe(true);
      expect(distance(low)).toBeLessThan(distance(high));
      // Strength 1 starts from pure noise: the image does not matter.
      expect(differ(await img(1), await img(1, new Uint8Array(gradient.length).fill(128)))).toBe(false);
    },
  );

  it("loads weights stored as external data (*.onnx_data), as large exports keep them", async () => {
    const dir = join(root, "flux-external");
    await cp(files["flux-schnell"].dir, dir, { recursive: true });
    for (const c of ["transformer", "text_encoder_2"]) {
      const graph = join(dir, c, "model.onnx");
      const before = (await stat(graph)).size;
      await moveWeightsToExternalData(graph);
      expect((await stat(graph)).size).toBeLessThan(before / 4);
      expect(await readdir(join(dir, c))).toContain("model.onnx_data");
    }
    const external = await detectModelDir(dir);
    if (external.kind !== "pipeline") throw new Error("not a pipeline");
    const a = await generate({ ...task("flux-schnell"), files: external }, settings);
    expect(differ(a.data, await run("flux-schnell"))).toBe(false);
  });

  it("stops at the next step once canceled", async () => {
    const cancel = new Int32Array(new SharedArrayBuffer(4));
    const { port1, port2 } = new MessageChannel();
    port2.on("message", (m: ProgressMessage) => {
      if (m.step === 2) Atomics.store(cancel, 0, 1);
    });
    await expect(
      generate(task("flux-dev", { num_inference_steps: 50 }, { progress: port1, cancel }), settings),
    ).rejects.toMatchObject({ code: "canceled" });
    port2.close();
  });
});
