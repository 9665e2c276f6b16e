// `pnpm bench` (third part): what the queue costs a Flux generation. A sync text-to-image request
// for a bench-size Flux dev export (flux-bench: optimum's Flux layout, a transformer step of about
// 70 ms at 512×512 on a 2-core CPU) through API + Redis + worker, against the same ONNX runs in
// this process:
// CLIP's pooled output, T5, steps × transformer on 2×2-packed latents with their ids and the
// guidance input, VAE decoder, uint8 and a PNG encode with the worker's settings. Paths alternate
// so machine noise hits both; the output is ratios from this one run, and the goal: ≤ 1.05×.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ClipTokenizer,
  createScheduler,
  encodeImage,
  fluxImageIds,
  fluxTextIds,
  gaussianStream,
  packPatches,
  T5Tokenizer,
  unpackPatches,
} from "@hybrid/inference";
import { generatePipelineModel } from "@hybrid/model-tools";
import * as ort from "onnxruntime-node";
import { isPng } from "../e2e/fixtures.ts";
import { TEST_MODELS_DIR } from "../e2e/stack.ts";
import { pct, startBenchStack, workerProviders, workerSessionOptions } from "./bench-utils.ts";

const MODEL = "flux-bench";
const dir = join(TEST_MODELS_DIR, MODEL);
await generatePipelineModel({ kind: "flux-dev", outDir: dir, arch: "bench" });
const WIDTH = 512;
const HEIGHT = 512;
const STEPS = 8;
const SEED = 1;
const GUIDANCE = 3.5;
/** Flux dev's default T5 sequence. */
const T5_LENGTH = 512;
const PROMPT = "a photo of an astronaut riding a horse on the moon";
const rounds = Number(process.env.BENCH_ROUNDS_GEN ?? 12);

const stack = await startBenchStack(`${MODEL}=${dir}`);
try {
  await bench((await workerProviders(stack.baseUrl))[MODEL] ?? "unknown");
} finally {
  await stack.stop();
}
process.exit(0);

async function bench(provider: string): Promise<void> {
  const options = workerSessionOptions(provider);
  const [clip, t5, transformer, vaeDecoder] = await Promise.all(
    ["text_encoder", "text_encoder_2", "transformer", "vae_decoder"].map((c) =>
      ort.InferenceSession.create(join(dir, c, "model.onnx"), options),
    ),
  );
  const clipTokenizer = await ClipTokenizer.fromDir(join(dir, "tokenizer"));
  const t5Tokenizer = await T5Tokenizer.fromDir(join(dir, "tokenizer_2"));
  const schedulerConfig: unknown = JSON.parse(
    await readFile(join(dir, "scheduler", "scheduler_config.json"), "utf8"),
  );
  const vae = JSON.parse(await readFile(join(dir, "vae_decoder", "config.json"), "utf8")) as {
    scaling_factor: number;
    shift_factor: number;
  };
  const h = HEIGHT / 8;
  const w = WIDTH / 8;
  const shape = [1, 16, h, w];
  const n = 16 * h * w;
  const tokens = (h / 2) * (w / 2);
  const imgIds = new ort.Tensor("float32", fluxImageIds(h / 2, w / 2), [tokens, 3]);
  const txtIds = new ort.Tensor("float32", fluxTextIds(T5_LENGTH), [T5_LENGTH, 3]);

  const phases = { text: [] as number[], steps: [] as number[], vae: [] as number[], png: [] as number[] };
  // The same arithmetic as pipeline.ts, so the PNG should equal the worker's byte for byte.
  const generateInProcess = async (): Promise<Buffer> => {
    const t0 = performance.now();
    const clipIds = clipTokenizer.encode(PROMPT).ids;
    const pooled = (
      await clip!.run({ input_ids: new ort.Tensor("int32", Int32Array.from(clipIds), [1, clipIds.length]) }, [
        "pooler_output",
      ])
    ).pooler_output!;
    const t5Ids = t5Tokenizer.encode(PROMPT, T5_LENGTH).ids;
    const hidden = (
      await t5!.run(
        { input_ids: new ort.Tensor("int64", BigInt64Array.from(t5Ids, BigInt), [1, T5_LENGTH]) },
        ["last_hidden_state"],
      )
    ).last_hidden_state!;
    const t1 = performance.now();
    const scheduler = createScheduler(schedulerConfig, STEPS, null, {
      imageSeqLen: tokens,
      flowSigmas: "flux",
    });
    const noise = gaussianStream(SEED);
    let latents = noise(n);
    for (let i = 0; i < scheduler.timesteps.length; i++) {
      const packed = packPatches(latents, shape, 2);
      const out = await transformer!.run(
        {
          hidden_states: new ort.Tensor("float32", packed.data, packed.shape),
          encoder_hidden_states: hidden,
          pooled_projections: pooled,
          timestep: new ort.Tensor("float32", Float32Array.of(scheduler.timesteps[i]! / 1000), [1]),
          img_ids: imgIds,
          txt_ids: txtIds,
          guidance: new ort.Tensor("float32", Float32Array.of(GUIDANCE), [1]),
        },
        ["out_hidden_states"],
      );
      const pred = unpackPatches(out.out_hidden_states!.data as Float32Array, shape, 2);
      latents = scheduler.step(pred, i, latents, noise);
    }
    const t2 = performance.now();
    const unscaled = latents.map((v) => v / vae.scaling_factor + vae.shift_factor);
    const image = await vaeDecoder!.run({ latent_sample: new ort.Tensor("float32", unscaled, shape) }, [
      "sample",
    ]);
    const planar = image.sample!.data as Float32Array;
    const plane = WIDTH * HEIGHT;
    const rgb = new Uint8ClampedArray(plane * 3);
    for (let i = 0; i < plane; i++)
      for (let c = 0; c < 3; c++)
        rgb[i * 3 + c] = Math.fround(Math.fround(planar[c * plane + i]! * 0.5 + 0.5) * 255);
    const t3 = performance.now();
    const png = await encodeImage(new Uint8Array(rgb.buffer), WIDTH, HEIGHT, "png");
    phases.text.push(t1 - t0);
    phases.steps.push(t2 - t1);
    phases.vae.push(t3 - t2);
    phases.png.push(performance.now() - t3);
    return png;
  };

  const body = JSON.stringify({
    inputs: PROMPT,
    parameters: {
      width: WIDTH,
      height: HEIGHT,
      num_inference_steps: STEPS,
      guidance_scale: GUIDANCE,
      seed: SEED,
    },
  });
  const answers = { inProcess: null as Buffer | null, endToEnd: null as Uint8Array | null };
  // ORT's threads spin for a while after a run: let them settle so no path slows the next one.
  const settle = () => new Promise((r) => setTimeout(r, 50));
  const inProcess = async () => {
    await settle();
    const t0 = performance.now();
    const png = await generateInProcess();
    const ms = performance.now() - t0;
    if (!isPng(png)) throw new Error("the in-process encode is not a PNG");
    answers.inProcess = png;
    return ms;
  };
  const endToEnd = async () => {
    await settle();
    const t0 = performance.now();
    const res = await fetch(`${stack.baseUrl}/v1/text-to-image/${MODEL}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "image/png", "x-use-cache": "false" },
      body,
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const ms = performance.now() - t0;
    if (res.status !== 200 || !isPng(bytes))
      throw new Error(`bad answer ${res.status}: ${Buffer.from(bytes).toString().slice(0, 300)}`);
    answers.endToEnd = bytes;
    return ms;
  };

  for (let i = 0; i < 3; i++) {
    await inProcess();
    await endToEnd();
  }
  for (const xs of Object.values(phases)) xs.length = 0;
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    a.push(await inProcess());
    b.push(await endToEnd());
  }
  await Promise.all([clip!, t5!, transformer!, vaeDecoder!].map((s) => s.release()));

  const r50 = pct(b, 50) / pct(a, 50);
  const r95 = pct(b, 95) / pct(a, 95);
  const med = (xs: number[]) => pct(xs, 50).toFixed(1);
  const same =
    answers.inProcess !== null && answers.endToEnd !== null && answers.inProcess.equals(answers.endToEnd);
  console.log(
    `\n${MODEL} (Flux dev layout) text-to-image ${WIDTH}x${HEIGHT}, ${STEPS} flow-match steps, guidance input ${GUIDANCE}, T5 ${T5_LENGTH}, PNG, sync`,
  );
  console.log(
    `${MODEL.padEnd(12)} provider=${provider} rounds=${String(rounds).padEnd(3)} e2e/in-process p50 ${r50.toFixed(3)}x  p95 ${r95.toFixed(3)}x  ` +
      `(overhead p50 ${(pct(b, 50) - pct(a, 50)).toFixed(1)} ms on a ${pct(a, 50).toFixed(1)} ms run)`,
  );
  console.log(
    `  in-process p50 by phase: text (CLIP + T5) ${med(phases.text)} ms, ${STEPS} × transformer ${med(phases.steps)} ms, ` +
      `VAE + uint8 ${med(phases.vae)} ms, PNG ${med(phases.png)} ms`,
  );
  console.log(`  in-process PNG identical to the e2e answer: ${same ? "yes" : "NO (the paths differ)"}`);
  console.log(
    `goal: Flux bench ${WIDTH}x${HEIGHT} ${STEPS} steps p50 ratio <= 1.05x: ${r50 <= 1.05 ? "met" : "NOT met"}`,
  );
}
