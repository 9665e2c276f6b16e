// The denoising pipeline, run inside a session thread: tokenize, encode the prompt, denoise step
// by step with the UNet and a scheduler, decode with the VAE. The whole loop stays in the thread
// (one progress message per step at most), so the main thread stays free for BullMQ.
import { AppError } from "@hybrid/protocol";
import * as ort from "onnxruntime-node";
import type { PipelineDir } from "../model-dir.ts";
import { gaussianStream } from "../random.ts";
import { fromOrtTensor, toOrtTensor } from "../sessions/ort-tensor.ts";
import { type GraphIO, getSession, type SessionSettings } from "../sessions/session-cache.ts";
import type { GenerateResult, GenerateTask, ProgressMessage } from "../sessions/thread-protocol.ts";
import { vaeDecode, vaeEncode } from "../vae/ops.ts";
import { imageToNCHW, toUint8ChannelsLast } from "../vae/postprocess.ts";
import { ClipTokenizer } from "./clip-tokenizer.ts";
import { TEXT_CONDITIONING } from "./conditioning.ts";
import { latentPreview, latentShape, packPatches, unpackPatches } from "./latents.ts";
import { createScheduler } from "./schedulers/index.ts";

const tokenizers = new Map<string, Promise<ClipTokenizer>>();
function tokenizer(dir: string): Promise<ClipTokenizer> {
  let t = tokenizers.get(dir);
  if (!t) {
    t = ClipTokenizer.fromDir(dir);
    t.catch(() => tokenizers.delete(dir));
    tokenizers.set(dir, t);
  }
  return t;
}

const find = (list: GraphIO[], name: string) => list.find((g) => g.name === name);

/** Token ids as the text encoder's `input_ids` wants them (int32 or int64). */
function idsTensor(ids: number[][], type: string): ort.Tensor {
  const flat = ids.flat();
  const dims = [ids.length, ids[0]!.length];
  if (type === "int64")
    return new ort.Tensor(
      "int64",
      BigInt64Array.from(flat, (v) => BigInt(v)),
      dims,
    );
  if (type === "int32") return new ort.Tensor("int32", Int32Array.from(flat), dims);
  throw new AppError("internal", `The text encoder takes ${type} input_ids, which this server cannot feed.`);
}

interface TextEmbeddings {
  /** [batch, sequence, hidden]: batch 2 = [negative, prompt] with guidance, 1 without. */
  hidden: Float32Array;
  shape: [number, number, number];
  /** SDXL's pooled embeddings of the last encoder, [batch, dim]. */
  pooled: { data: Float32Array; dim: number } | null;
  truncated: boolean;
}

/**
 * Encodes the prompt (and the negative prompt when guidance runs) with every text encoder and
 * joins their hidden states along the feature axis, as SDXL does with its two encoders.
 */
async function encodeText(
  files: PipelineDir,
  prompt: string,
  negative: string,
  guidance: boolean,
  settings: SessionSettings,
): Promise<TextEmbeddings> {
  const parts: Array<{ data: Float32Array; hidden: number }> = [];
  let pooled: TextEmbeddings["pooled"] = null;
  let truncated = false;
  let sequence = 0;
  const batch = guidance ? 2 : 1;
  const conditioning = TEXT_CONDITIONING[files.layout.name];
  for (let e = 0; e < files.textEncoders.length; e++) {
    const tok = await tokenizer(files.tokenizers[e]!);
    const cond = tok.encode(prompt);
    truncated ||= cond.truncated;
    const ids = guidance ? [tok.encode(negative).ids, cond.ids] : [cond.ids];
    const { session, inputs, outputs } = await getSession(files.textEncoders[e]!, settings);
    const idsInput = find(inputs, "input_ids") ?? inputs[0]!;
    // The penultimate layer when the family takes it and the export has it (hidden_states.N).
    const layers = outputs.filter((o) => /^hidden_states\.\d+$/.test(o.name));
    const hiddenName =
      conditioning.hidden === "penultimate" && layers.length >= 2
        ? `hidden_states.${layers.length - 2}`
        : (find(outputs, "last_hidden_state") ?? outputs[0]!).name;
    const wantPooled = conditioning.pooled && e === files.textEncoders.length - 1;
    const pooledName = find(outputs, "text_embeds")?.name ?? find(outputs, "pooler_output")?.name;
    const names = [hiddenName, ...(wantPooled && pooledName ? [pooledName] : [])];
    const out = await session.run({ [idsInput.name]: idsTensor(ids, idsInput.type) }, names);
    const h = fromOrtTensor(out[hiddenName] as ort.Tensor);
    sequence = h.shape[1]!;
    parts.push({ data: h.data, hidden: h.shape[2]! });
    if (wantPooled && pooledName) {
      const p = fromOrtTensor(out[pooledName] as ort.Tensor);
      pooled = { data: p.data, dim: p.shape[1]! };
    }
  }
  const hidden = parts.reduce((a, p) => a + p.hidden, 0);
  const joined = new Float32Array(batch * sequence * hidden);
  for (let b = 0; b < batch; b++)
    for (let s = 0; s < sequence; s++) {
      let offset = (b * sequence + s) * hidden;
      for (const p of parts) {
        const src = (b * sequence + s) * p.hidden;
        joined.set(p.data.subarray(src, src + p.hidden), offset);
        offset += p.hidden;
      }
    }
  // SDXL: an empty negative prompt is "nothing", zeros, not the embedding of an empty string.
  if (guidance && files.forceZerosForEmptyPrompt && negative.trim() === "") {
    joined.fill(0, 0, sequence * hidden);
    pooled?.data.fill(0, 0, pooled.dim);
  }
  return { hidden: joined, shape: [batch, sequence, hidden], pooled, truncated };
}

/** diffusers' `get_guidance_scale_embedding` (LCM): sinusoids of (w - 1) × 1000. */
export function guidanceEmbedding(guidanceScale: number, dim: number): Float32Array {
  const w = (guidanceScale - 1) * 1000;
  const half = Math.floor(dim / 2);
  const out = new Float32Array(dim);
  const step = Math.log(10000) / (half - 1);
  for (let i = 0; i < half; i++) {
    const x = w * Math.exp(-step * i);
    out[i] = Math.sin(x);
    out[half + i] = Math.cos(x);
  }
  return out;
}

/** The UNet's `timestep` input, in the dtype and rank the export declares. */
function timestepTensor(t: number, io: GraphIO): ort.Tensor {
  const dims = io.shape.length === 0 ? [] : [1];
  switch (io.type) {
    case "int64":
      return new ort.Tensor("int64", BigInt64Array.of(BigInt(Math.round(t))), dims);
    case "int32":
      return new ort.Tensor("int32", Int32Array.of(Math.round(t)), dims);
    default:
      return toOrtTensor(Float32Array.of(t), dims, io.type);
  }
}

/** Repeats a [1, ...] tensor's values `times` along the batch axis. */
function repeatBatch(values: Float32Array, times: number): Float32Array {
  if (times === 1) return values;
  const out = new Float32Array(values.length * times);
  for (let i = 0; i < times; i++) out.set(values, i * values.length);
  return out;
}

/** Runs one generation to RGB pixels. Throws AppError `canceled` when the cancel flag is set. */
export async function generate(task: GenerateTask, settings: SessionSettings): Promise<GenerateResult> {
  const { files, params, width, height } = task;
  const geometry = files.geometry;
  const shape = latentShape(geometry, width, height);
  const [, channels, h, w] = shape;
  const scaling = { scale: geometry.scalingFactor, shift: geometry.shiftFactor ?? 0 };
  const lcm = files.timeCondProjDim !== null;
  // Guidance as one denoiser batch of 2 (negative, prompt) above 1; LCM embeds guidance instead.
  const cfg = !lcm && params.guidance_scale > 1;
  const batch = cfg ? 2 : 1;
  // Image-to-image with strength × steps < 1 denoises nothing (diffusers refuses it): the
  // answer is the init image's VAE round trip.
  const steps = params.num_inference_steps;
  const untouched = task.init !== null && Math.floor(steps * params.strength) === 0;
  const scheduler = createScheduler(files.scheduler, steps, params.scheduler, {
    strength: task.init && !untouched ? params.strength : 1,
  });
  const text = await encodeText(files, params.prompt, params.negative_prompt, cfg, settings);
  const noise = gaussianStream(params.seed);
  const n = channels * h * w;

  let latents: Float32Array;
  if (task.init) {
    if (!files.vaeEncoder)
      throw new AppError("unsupported_operation", `Model ${task.model} has no VAE encoder.`);
    const { init } = task;
    // The mean of the encoder's distribution keeps image-to-image deterministic.
    const encoded = await vaeEncode(
      files.vaeEncoder,
      imageToNCHW(init.data, init.width, init.height, 3),
      [1, 3, init.height, init.width],
      { scaling, sample: null },
      settings,
    );
    const clean = encoded.data.subarray(0, n);
    latents = untouched ? clean : scheduler.addNoise(clean, noise(n), scheduler.beginIndex);
  } else {
    latents = noise(n);
    for (let i = 0; i < n; i++) latents[i]! *= scheduler.initNoiseSigma;
  }

  const denoiser = await getSession(files.denoiser, settings);
  const io = (name: string) => find(denoiser.inputs, name);
  const sampleIo = io("sample") ?? denoiser.inputs[0]!;
  const timestepIo = io("timestep");
  const hiddenIo = io("encoder_hidden_states");
  if (!timestepIo || !hiddenIo)
    throw new AppError("internal", `Model ${task.model}: the UNet lacks timestep or encoder_hidden_states.`);
  const outName = (find(denoiser.outputs, "out_sample") ?? denoiser.outputs[0]!).name;
  const fixed: Record<string, ort.Tensor> = {
    [hiddenIo.name]: toOrtTensor(text.hidden, text.shape, hiddenIo.type),
  };
  const textEmbedsIo = io("text_embeds");
  const timeIdsIo = io("time_ids");
  if (textEmbedsIo) {
    if (!text.pooled)
      throw new AppError("internal", `Model ${task.model}: no pooled text embeddings for text_embeds.`);
    fixed[textEmbedsIo.name] = toOrtTensor(text.pooled.data, [batch, text.pooled.dim], textEmbedsIo.type);
  }
  if (timeIdsIo) {
    // original size, crop top-left, target size (SDXL's micro-conditioning).
    const ids = Float32Array.of(height, width, 0, 0, height, width);
    fixed[timeIdsIo.name] = toOrtTensor(repeatBatch(ids, batch), [batch, 6], timeIdsIo.type);
  }
  const condIo = io("timestep_cond");
  if (condIo && files.timeCondProjDim) {
    const emb = guidanceEmbedding(params.guidance_scale, files.timeCondProjDim);
    fixed[condIo.name] = toOrtTensor(repeatBatch(emb, batch), [batch, files.timeCondProjDim], condIo.type);
  }

  // The scheduler works on [1, C, h, w]; the denoiser sees the batch in its own (packed) layout.
  const patch = geometry.patchSize;
  const end = untouched ? scheduler.beginIndex : scheduler.timesteps.length;
  const evaluations = end - scheduler.beginIndex;
  // Progress counts the steps the user asked for (after strength), not denoiser evaluations:
  // PLMS evaluates its first step twice (30 steps are 31 evaluations). The extra evaluations come
  // first, so the first report is sent once the first real step is done.
  const total = Math.min(evaluations, Math.max(0, scheduler.numInferenceSteps - scheduler.beginIndex));
  const extra = evaluations - total;
  for (let i = scheduler.beginIndex; i < end; i++) {
    if (task.cancel && Atomics.load(task.cancel, 0) !== 0)
      throw new AppError("canceled", "The job was canceled.");
    const t = scheduler.timesteps[i]!;
    const packed = packPatches(scheduler.scaleModelInput(latents, i), shape, patch);
    const input = repeatBatch(packed.data, batch);
    const out = await denoiser.session.run(
      {
        ...fixed,
        [sampleIo.name]: toOrtTensor(input, [batch, ...packed.shape.slice(1)], sampleIo.type),
        [timestepIo.name]: timestepTensor(t, timestepIo),
      },
      [outName],
    );
    const pred = fromOrtTensor(out[outName] as ort.Tensor).data;
    let eps = pred;
    if (cfg) {
      eps = new Float32Array(n);
      const g = params.guidance_scale;
      for (let k = 0; k < n; k++) eps[k] = pred[k]! + g * (pred[n + k]! - pred[k]!);
    }
    latents = scheduler.step(unpackPatches(eps, shape, patch), i, latents, noise);
    const step = i - scheduler.beginIndex + 1 - extra;
    if (task.progress && step >= 1) {
      const msg: ProgressMessage = { step, total };
      if (params.previews)
        msg.preview = { data: latentPreview(latents, channels, h, w), width: w, height: h };
      task.progress.postMessage(msg);
    }
  }
  if (task.cancel && Atomics.load(task.cancel, 0) !== 0)
    throw new AppError("canceled", "The job was canceled.");
  // The result goes back on another port, which may overtake this one: mark the last report.
  task.progress?.postMessage({ done: true, step: total, total } satisfies ProgressMessage);

  // A copy: the decode unscales in place, and `latents` may be the encoder's own output.
  const decoded = await vaeDecode(files.vaeDecoder, latents.slice(0, n), shape, scaling, settings);
  const rgb = toUint8ChannelsLast(decoded.data, decoded.shape);
  return { kind: "pixels", data: rgb.data, frames: 1, width, height, truncated: text.truncated };
}
