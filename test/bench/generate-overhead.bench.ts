// `pnpm bench` (second part): what the queue costs a generation. A sync text-to-image request
// (sd-tiny, 256x256, 8 Euler steps, PNG) through API + Redis + worker against the same ONNX runs
// in this process: text encoder, steps × UNet (batch 2: the pipeline runs classifier-free
// guidance as one batch when guidance_scale > 1), VAE decoder, the uint8 conversion and a PNG
// encode with the worker's settings, so the ratio measures the queue (HTTP, Redis, BullMQ, thread
// hand-off, progress events) and not the image codec. A third path, the worker's own
// DiffusionRuntime on a session thread in this process, splits the runtime's share (thread
// hand-off, progress port) from the queue's. Measurements alternate between the paths so machine
// noise hits all alike; the output is ratios from this one run.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ClipTokenizer,
  createScheduler,
  DiffusionRuntime,
  encodeImage,
  gaussianStream,
  SessionHost,
} from "@hybrid/inference";
import { generatePipelineModel } from "@hybrid/model-tools";
import type { GenerateParams, JobObject } from "@hybrid/protocol";
import * as ort from "onnxruntime-node";
import { isPng } from "../e2e/fixtures.ts";
import { TEST_MODELS_DIR } from "../e2e/stack.ts";
import {
  inProcessProviders,
  pct,
  startBenchStack,
  workerProviders,
  workerSessionOptions,
} from "./bench-utils.ts";

// sd-tiny: the test pipeline (~4 ms a UNet step), where the queue's fixed cost dominates;
// sd-bench: the same SD-1.x layout with ~64x the UNet compute, against which the goal is set
// (as the decode bench sets it against a TAESD-size VAE).
const MODELS = ["sd-tiny", "sd-bench"] as const;
const benchDir = join(TEST_MODELS_DIR, "sd-bench");
await generatePipelineModel({ kind: "sd-v1", outDir: benchDir, arch: "bench" });
const WIDTH = 256;
const HEIGHT = 256;
const STEPS = 8;
const SEED = 1;
// sd-tiny's default (the worker's generationInfo), given explicitly so every path runs batch 2.
const GUIDANCE = 7.5;
const PROMPT = "a photo of an astronaut riding a horse on the moon";
const rounds = Number(process.env.BENCH_ROUNDS_GEN ?? 12);

const stack = await startBenchStack(`sd-tiny,sd-bench=${benchDir}`);
let providers: Record<string, string> = {};
try {
  providers = await workerProviders(stack.baseUrl);
  for (const MODEL of MODELS) await bench(MODEL, join(TEST_MODELS_DIR, MODEL));
} finally {
  await stack.stop();
}
process.exit(0);

async function bench(MODEL: string, dir: string): Promise<void> {
  const provider = providers[MODEL] ?? "unknown";
  const eps = inProcessProviders(provider);
  const options = workerSessionOptions(provider);
  const [textEncoder, unet, vaeDecoder] = await Promise.all(
    ["text_encoder", "unet", "vae_decoder"].map((c) =>
      ort.InferenceSession.create(join(dir, c, "model.onnx"), options),
    ),
  );
  const tokenizer = await ClipTokenizer.fromDir(join(dir, "tokenizer"));
  const schedulerConfig: unknown = JSON.parse(
    await readFile(join(dir, "scheduler", "scheduler_config.json"), "utf8"),
  );
  const { scaling_factor: scalingFactor } = JSON.parse(
    await readFile(join(dir, "vae_decoder", "config.json"), "utf8"),
  ) as { scaling_factor: number };
  const h = HEIGHT / 8;
  const w = WIDTH / 8;
  const n = 4 * h * w;

  // Where the in-process time goes, per phase, for the breakdown printed at the end.
  const phases = { text: [] as number[], unet: [] as number[], vae: [] as number[], png: [] as number[] };
  // The same arithmetic as pipeline.ts, so the PNG should equal the worker's byte for byte.
  const generateInProcess = async (): Promise<Buffer> => {
    const t0 = performance.now();
    const negative = tokenizer.encode("").ids;
    const cond = tokenizer.encode(PROMPT).ids;
    const ids = new ort.Tensor("int32", Int32Array.from([...negative, ...cond]), [2, cond.length]);
    const text = await textEncoder!.run({ input_ids: ids }, ["last_hidden_state"]);
    const hidden = text.last_hidden_state!;
    const t1 = performance.now();
    const scheduler = createScheduler(schedulerConfig, STEPS, "euler");
    const noise = gaussianStream(SEED);
    let latents = noise(n);
    for (let k = 0; k < n; k++) latents[k]! *= scheduler.initNoiseSigma;
    for (let i = 0; i < scheduler.timesteps.length; i++) {
      const x = scheduler.scaleModelInput(latents, i);
      const batch = new Float32Array(2 * n);
      batch.set(x);
      batch.set(x, n);
      const out = await unet!.run(
        {
          sample: new ort.Tensor("float32", batch, [2, 4, h, w]),
          timestep: new ort.Tensor("float32", Float32Array.of(scheduler.timesteps[i]!), [1]),
          encoder_hidden_states: hidden,
        },
        ["out_sample"],
      );
      const pred = out.out_sample!.data as Float32Array;
      const eps = new Float32Array(n);
      for (let k = 0; k < n; k++) eps[k] = pred[k]! + GUIDANCE * (pred[n + k]! - pred[k]!);
      latents = scheduler.step(eps, i, latents, noise);
    }
    const t2 = performance.now();
    const scaled = latents.map((v) => v / scalingFactor);
    const image = await vaeDecoder!.run({ latent_sample: new ort.Tensor("float32", scaled, [1, 4, h, w]) }, [
      "sample",
    ]);
    const planar = image.sample!.data as Float32Array;
    const plane = WIDTH * HEIGHT;
    // As postprocess.ts's toUint8ChannelsLast: [-1, 1] → [0, 255] in float32 steps, NCHW → HWC.
    const rgb = new Uint8ClampedArray(plane * 3);
    for (let i = 0; i < plane; i++)
      for (let c = 0; c < 3; c++)
        rgb[i * 3 + c] = Math.fround(Math.fround(planar[c * plane + i]! * 0.5 + 0.5) * 255);
    const t3 = performance.now();
    const png = await encodeImage(new Uint8Array(rgb.buffer), WIDTH, HEIGHT, "png");
    const t4 = performance.now();
    phases.text.push(t1 - t0);
    phases.unet.push(t2 - t1);
    phases.vae.push(t3 - t2);
    phases.png.push(t4 - t3);
    return png;
  };

  // The worker's runtime with the worker's default settings (one session thread), minus the queue.
  const host = new SessionHost({ threads: 1, providers: eps, intraOpThreads: 0, allowSpinning: true });
  const runtime = await DiffusionRuntime.open([{ id: MODEL, dir }], host);
  const params: GenerateParams = {
    task: "text-to-image",
    prompt: PROMPT,
    negative_prompt: "",
    width: WIDTH,
    height: HEIGHT,
    num_inference_steps: STEPS,
    guidance_scale: GUIDANCE,
    scheduler: "euler",
    previews: false,
    strength: 1,
    seed: SEED,
    target_size: null,
  };

  const body = JSON.stringify({
    inputs: PROMPT,
    parameters: {
      width: WIDTH,
      height: HEIGHT,
      num_inference_steps: STEPS,
      guidance_scale: GUIDANCE,
      seed: SEED,
      scheduler: "euler",
    },
  });
  // The e2e time split by the job record's timestamps (ms, same clock): request → job recorded,
  // recorded → picked up, picked up → finished (the worker's whole job), finished → bytes here.
  const split = {
    submit: [] as number[],
    queue: [] as number[],
    worker: [] as number[],
    answer: [] as number[],
  };
  let lastJob: { id: string; sent: number; received: number } | null = null;
  const answers = { inProcess: null as Buffer | null, endToEnd: null as Uint8Array | null };

  // ORT's threads spin for a while after a run: let them settle so no path slows the next one.
  // The previous request's job record is read here, outside every timing.
  const settle = async () => {
    if (lastJob) {
      const res = await fetch(`${stack.baseUrl}/v1/jobs/${encodeURIComponent(lastJob.id)}`);
      if (res.ok) {
        const job = (await res.json()) as JobObject;
        const created = Date.parse(job.created_at);
        const started = job.started_at ? Date.parse(job.started_at) : Number.NaN;
        const completed = job.completed_at ? Date.parse(job.completed_at) : Number.NaN;
        split.submit.push(created - lastJob.sent);
        split.queue.push(started - created);
        split.worker.push(completed - started);
        split.answer.push(lastJob.received - completed);
      }
      lastJob = null;
    }
    await new Promise((r) => setTimeout(r, 50));
  };
  const inProcess = async () => {
    await settle();
    const t0 = performance.now();
    const png = await generateInProcess();
    const ms = performance.now() - t0;
    if (!isPng(png)) throw new Error("the in-process encode is not a PNG");
    answers.inProcess = png;
    return ms;
  };
  const onThread = async () => {
    await settle();
    const t0 = performance.now();
    const out = await runtime.generate(MODEL, params, {
      init: null,
      format: "png",
      maxPixels: WIDTH * HEIGHT,
      onProgress: () => {},
    });
    const ms = performance.now() - t0;
    if (!isPng(out.bytes)) throw new Error("the runtime's answer is not a PNG");
    return ms;
  };
  const endToEnd = async () => {
    await settle();
    const sent = Date.now();
    const t0 = performance.now();
    const res = await fetch(`${stack.baseUrl}/v1/text-to-image/${MODEL}`, {
      method: "POST",
      // A seeded request may be answered from the API's result cache: this measures the run.
      headers: { "Content-Type": "application/json", Accept: "image/png", "x-use-cache": "false" },
      body,
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const ms = performance.now() - t0;
    if (res.status !== 200 || !isPng(bytes))
      throw new Error(`bad answer ${res.status}: ${Buffer.from(bytes).toString().slice(0, 300)}`);
    if (res.headers.get("x-cache") === "HIT") throw new Error("answered from the result cache");
    const id = res.headers.get("x-job-id");
    if (id) lastJob = { id, sent, received: Date.now() };
    answers.endToEnd = bytes;
    return ms;
  };

  // Warm every path (session creation, first-run allocations, connections), then drop the
  // warm-up's breakdowns.
  for (let i = 0; i < 3; i++) {
    await inProcess();
    await endToEnd();
    await onThread();
  }
  await settle();
  for (const xs of [...Object.values(phases), ...Object.values(split)]) xs.length = 0;
  const a: number[] = [];
  const b: number[] = [];
  const c: number[] = [];
  for (let i = 0; i < rounds; i++) {
    a.push(await inProcess());
    b.push(await endToEnd());
    c.push(await onThread());
  }
  await settle();
  await host.close();
  await Promise.all([textEncoder!.release(), unet!.release(), vaeDecoder!.release()]);

  const r50 = pct(b, 50) / pct(a, 50);
  const r95 = pct(b, 95) / pct(a, 95);
  const med = (xs: number[]) => (xs.length > 0 ? pct(xs, 50).toFixed(1) : "n/a");
  const same =
    answers.inProcess !== null && answers.endToEnd !== null && answers.inProcess.equals(answers.endToEnd);
  console.log(
    `\n${MODEL} text-to-image ${WIDTH}x${HEIGHT}, ${STEPS} euler steps, guidance ${GUIDANCE} (UNet batch 2), PNG, sync`,
  );
  console.log(
    `${MODEL.padEnd(12)} provider=${provider} rounds=${String(rounds).padEnd(3)} e2e/in-process p50 ${r50.toFixed(3)}x  p95 ${r95.toFixed(3)}x  ` +
      `(overhead p50 ${(pct(b, 50) - pct(a, 50)).toFixed(1)} ms on a ${pct(a, 50).toFixed(1)} ms run, ` +
      `p95 ${(pct(b, 95) - pct(a, 95)).toFixed(1)} ms on ${pct(a, 95).toFixed(1)} ms)`,
  );
  console.log(
    `  session thread (DiffusionRuntime, no queue)/in-process p50 ${(pct(c, 50) / pct(a, 50)).toFixed(3)}x  ` +
      `p95 ${(pct(c, 95) / pct(a, 95)).toFixed(3)}x  (${pct(c, 50).toFixed(1)} ms p50)`,
  );
  console.log(
    `  in-process p50 by phase: text ${med(phases.text)} ms, ${STEPS} × UNet ${med(phases.unet)} ms, ` +
      `VAE + uint8 ${med(phases.vae)} ms, PNG ${med(phases.png)} ms`,
  );
  console.log(
    `  e2e p50 by job record (1 ms clock): request → recorded ${med(split.submit)} ms, queued ${med(split.queue)} ms, ` +
      `worker ${med(split.worker)} ms, finished → answer ${med(split.answer)} ms`,
  );
  console.log(`  in-process PNG identical to the e2e answer: ${same ? "yes" : "NO (the paths differ)"}`);
  if (MODEL === "sd-bench")
    console.log(
      `goal: SD-1.x-like (${MODEL}) ${WIDTH}x${HEIGHT} ${STEPS} steps p50 ratio <= 1.05x: ${r50 <= 1.05 ? "met" : "NOT met"}`,
    );
}
