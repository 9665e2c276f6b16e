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
import {
  concatPooled,
  fluxImageIds,
  fluxTextIds,
  joinSd3Text,
  type Pooled,
  type Sequence,
  t5SequenceLength,
  transformerTimestep,
} from "./flow-conditioning.ts";
import { latentPreview, latentShape, packPatches, sizePatch, unpackPatches } from "./latents.ts";
import { createScheduler, type SchedulerOptions } from "./schedulers/index.ts";
import { T5Tokenizer } from "./t5-tokenizer.ts";

/** One loaded tokenizer per folder and kind, for the thread's life (a failed load is retried). */
function cached<T>(load: (dir: string) => Promise<T>): (dir: string) => Promise<T> {
  const loaded = new Map<string, Promise<T>>();
  return (dir) => {
    let t = loaded.get(dir);
    if (!t) {
      t = load(dir);
      t.catch(() => loaded.delete(dir));
      loaded.set(dir, t);
    }
    return t;
  };
}
const tokenizer = cached((dir) => ClipTokenizer.fromDir(dir));
const t5Tokenizer = cached((dir) => T5Tokenizer.fromDir(dir));

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

/** One CLIP text encoder's answer for a batch of texts. */
interface ClipOutput {
  /** The hidden state asked for: the last layer's, or the penultimate one's when exported. */
  hidden: Sequence;
  /** `text_embeds` (with projection) or `pooler_output`, when asked for and exported. */
  pooled: Pooled | null;
  /** Per text: whether it was cut to the tokenizer's length. */
  truncated: boolean[];
}

/** Runs one CLIP text encoder on `texts` (one batch row each). */
async function runClip(
  graph: string,
  tokenizerDir: string,
  texts: string[],
  want: { hidden: "last" | "penultimate"; pooled: boolean },
  settings: SessionSettings,
): Promise<ClipOutput> {
  const tok = await tokenizer(tokenizerDir);
  const encoded = texts.map((t) => tok.encode(t));
  const { session, inputs, outputs } = await getSession(graph, settings);
  const idsInput = find(inputs, "input_ids") ?? inputs[0]!;
  // The penultimate layer when the family takes it and the export has it (hidden_states.N).
  const layers = outputs.filter((o) => /^hidden_states\.\d+$/.test(o.name));
  const hiddenName =
    want.hidden === "penultimate" && layers.length >= 2
      ? `hidden_states.${layers.length - 2}`
      : (find(outputs, "last_hidden_state") ?? outputs[0]!).name;
  const pooledName = want.pooled
    ? (find(outputs, "text_embeds")?.name ?? find(outputs, "pooler_output")?.name)
    : undefined;
  const names = [hiddenName, ...(pooledName ? [pooledName] : [])];
  const out = await session.run(
    {
      [idsInput.name]: idsTensor(
        encoded.map((e) => e.ids),
        idsInput.type,
      ),
    },
    names,
  );
  const h = fromOrtTensor(out[hiddenName] as ort.Tensor);
  const p = pooledName ? fromOrtTensor(out[pooledName] as ort.Tensor) : null;
  return {
    hidden: { data: h.data, batch: h.shape[0]!, sequence: h.shape[1]!, dim: h.shape[2]! },
    pooled: p ? { data: p.data, batch: p.shape[0]!, dim: p.shape[1]! } : null,
    truncated: encoded.map((e) => e.truncated),
  };
}

/** Runs a T5 encoder on `texts`, each padded or cut to `length` tokens (diffusers' max_sequence_length). */
async function runT5(
  graph: string,
  tokenizerDir: string,
  texts: string[],
  length: number,
  settings: SessionSettings,
): Promise<{ hidden: Sequence; truncated: boolean[] }> {
  const tok = await t5Tokenizer(tokenizerDir);
  const encoded = texts.map((t) => tok.encode(t, length));
  const { session, inputs, outputs } = await getSession(graph, settings);
  const idsInput = find(inputs, "input_ids") ?? inputs[0]!;
  const hiddenName = (find(outputs, "last_hidden_state") ?? outputs[0]!).name;
  const out = await session.run(
    {
      [idsInput.name]: idsTensor(
        encoded.map((e) => e.ids),
        idsInput.type,
      ),
    },
    [hiddenName],
  );
  const h = fromOrtTensor(out[hiddenName] as ort.Tensor);
  return {
    hidden: { data: h.data, batch: h.shape[0]!, sequence: h.shape[1]!, dim: h.shape[2]! },
    truncated: encoded.map((e) => e.truncated),
  };
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
  const parts: ClipOutput[] = [];
  const texts = guidance ? [negative, prompt] : [prompt];
  const conditioning = TEXT_CONDITIONING[files.layout.name];
  for (let e = 0; e < files.textEncoders.length; e++) {
    const last = e === files.textEncoders.length - 1;
    parts.push(
      await runClip(
        files.textEncoders[e]!,
        files.tokenizers[e]!,
        texts,
        { hidden: conditioning.hidden, pooled: conditioning.pooled && last },
        settings,
      ),
    );
  }
  const batch = texts.length;
  const sequence = parts[0]!.hidden.sequence;
  const hidden = parts.reduce((a, p) => a + p.hidden.dim, 0);
  const joined = new Float32Array(batch * sequence * hidden);
  for (let b = 0; b < batch; b++)
    for (let s = 0; s < sequence; s++) {
      let offset = (b * sequence + s) * hidden;
      for (const { hidden: p } of parts) {
        const src = (b * sequence + s) * p.dim;
        joined.set(p.data.subarray(src, src + p.dim), offset);
        offset += p.dim;
      }
    }
  const lastPooled = parts.at(-1)!.pooled;
  const pooled = lastPooled ? { data: lastPooled.data, dim: lastPooled.dim } : null;
  // SDXL: an empty negative prompt is "nothing", zeros, not the embedding of an empty string.
  if (guidance && files.forceZerosForEmptyPrompt && negative.trim() === "") {
    joined.fill(0, 0, sequence * hidden);
    pooled?.data.fill(0, 0, pooled.dim);
  }
  // Only the prompt's truncation is reported (it is the last row).
  const truncated = parts.some((p) => p.truncated.at(-1) === true);
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

/**
 * The denoiser's `timestep` input, in the dtype and rank the export declares: a scalar, or
 * `rows` values (diffusers' transformer pipelines expand t over the batch; UNets take one).
 */
function timestepTensor(t: number, io: GraphIO, rows: number): ort.Tensor {
  const n = io.shape.length === 0 || io.shape[0] === 1 ? 1 : rows;
  const dims = io.shape.length === 0 ? [] : [n];
  switch (io.type) {
    case "int64":
      return new ort.Tensor("int64", new BigInt64Array(n).fill(BigInt(Math.round(t))), dims);
    case "int32":
      return new ort.Tensor("int32", new Int32Array(n).fill(Math.round(t)), dims);
    default:
      return toOrtTensor(new Float32Array(n).fill(t), dims, io.type);
  }
}

/** Repeats a [1, ...] tensor's values `times` along the batch axis. */
function repeatBatch(values: Float32Array, times: number): Float32Array {
  if (times === 1) return values;
  const out = new Float32Array(values.length * times);
  for (let i = 0; i < times; i++) out.set(values, i * values.length);
  return out;
}

/** What the denoising loop feeds the denoiser, however the family conditions it. */
interface Denoising {
  session: ort.InferenceSession;
  /** Inputs that stay the same at every step (text conditioning, ids, guidance...). */
  fixed: Record<string, ort.Tensor>;
  sample: GraphIO;
  timestep: GraphIO;
  /** What the `timestep` input gets for the scheduler's timestep t. */
  timestepValue: (t: number) => number;
  /** The timestep once (UNets) or once per batch row (transformers). */
  timestepPerRow: boolean;
  output: string;
  /** Classifier-free guidance: the denoiser runs a batch of 2 (negative, prompt). */
  cfg: boolean;
  /** Whether the prompt was cut to what a text encoder takes. */
  truncated: boolean;
  /** What cut it, when not CLIP's 77 tokens alone. */
  truncatedBy?: string;
}

/** A UNet (SD 1.x, SDXL, LCM): CLIP hidden states, SDXL's pooled and size conditioning, LCM's guidance embedding. */
async function unetDenoising(task: GenerateTask, settings: SessionSettings): Promise<Denoising> {
  const { files, params, width, height } = task;
  const lcm = files.timeCondProjDim !== null;
  // Guidance as one denoiser batch of 2 (negative, prompt) above 1; LCM embeds guidance instead.
  const cfg = !lcm && params.guidance_scale > 1;
  const batch = cfg ? 2 : 1;
  const text = await encodeText(files, params.prompt, params.negative_prompt, cfg, settings);
  const denoiser = await getSession(files.denoiser, settings);
  const io = (name: string) => find(denoiser.inputs, name);
  const timestepIo = io("timestep");
  const hiddenIo = io("encoder_hidden_states");
  if (!timestepIo || !hiddenIo)
    throw new AppError("internal", `Model ${task.model}: the UNet lacks timestep or encoder_hidden_states.`);
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
  return {
    session: denoiser.session,
    fixed,
    sample: io("sample") ?? denoiser.inputs[0]!,
    timestep: timestepIo,
    timestepValue: (t) => t,
    timestepPerRow: false,
    output: (find(denoiser.outputs, "out_sample") ?? denoiser.outputs[0]!).name,
    cfg,
    truncated: text.truncated,
  };
}

/**
 * A flow-matching transformer, conditioned as diffusers' pipelines do:
 * - Flux: CLIP's pooled vector and T5's sequence; no classifier-free batch (dev takes the
 *   guidance scale as its `guidance` input, schnell none); `img_ids` per 2×2 patch, `txt_ids`
 *   zeros; the timestep as σ = t / 1000. The negative prompt is not used.
 * - SD3: both CLIPs' penultimate states joined and zero-padded to the T5 width, then T5's
 *   sequence (zeros without `text_encoder_3`); both pooled vectors joined; classifier-free
 *   guidance as a batch of 2 above scale 1, the negative prompt "" when none is given.
 */
async function flowDenoising(
  task: GenerateTask,
  shape: readonly number[],
  settings: SessionSettings,
): Promise<Denoising> {
  const { files, params } = task;
  const transformer = files.transformer;
  if (!transformer) throw new AppError("internal", `Model ${task.model} has no transformer config.`);
  const flux = files.layout.name === "flux";
  const family = flux ? "flux" : "sd3";
  const cfg = !flux && params.guidance_scale > 1;
  const texts = cfg ? [params.negative_prompt, params.prompt] : [params.prompt];
  const batch = texts.length;
  const slot = (component: string) => files.text.find((t) => t.component === component);
  const length = t5SequenceLength(family, transformer.guidance_embeds, params.max_sequence_length);
  let hidden: Sequence;
  let pooled: Pooled;
  let cutBy: string[];
  if (flux) {
    const clip = slot("text_encoder");
    const t5 = slot("text_encoder_2");
    if (!clip || !t5)
      throw new AppError("internal", `Model ${task.model}: Flux needs its CLIP and T5 encoders.`);
    const c = await runClip(clip.graph, clip.tokenizer, texts, { hidden: "last", pooled: true }, settings);
    if (!c.pooled)
      throw new AppError("internal", `Model ${task.model}: the CLIP text encoder exports no pooled output.`);
    const t = await runT5(t5.graph, t5.tokenizer, texts, length, settings);
    hidden = t.hidden;
    pooled = c.pooled;
    cutBy = [
      ...(c.truncated.at(-1) ? ["CLIP: 77 tokens"] : []),
      ...(t.truncated.at(-1) ? [`T5: ${length} tokens`] : []),
    ];
  } else {
    const l = slot("text_encoder");
    const g = slot("text_encoder_2");
    if (!l || !g) throw new AppError("internal", `Model ${task.model}: SD3 needs both CLIP encoders.`);
    const want = { hidden: "penultimate", pooled: true } as const;
    const cl = await runClip(l.graph, l.tokenizer, texts, want, settings);
    const cg = await runClip(g.graph, g.tokenizer, texts, want, settings);
    if (!cl.pooled || !cg.pooled)
      throw new AppError("internal", `Model ${task.model}: a CLIP encoder exports no text_embeds.`);
    const t5 = slot("text_encoder_3");
    const t = t5 ? await runT5(t5.graph, t5.tokenizer, texts, length, settings) : null;
    // Without T5, diffusers appends the tokenizer's length (77) of zeros at the joint width.
    hidden = joinSd3Text(
      cl.hidden,
      cg.hidden,
      t ? t.hidden : { zeros: { sequence: cl.hidden.sequence, dim: transformer.joint_attention_dim } },
    );
    pooled = concatPooled(cl.pooled, cg.pooled);
    cutBy = [
      ...(cl.truncated.at(-1) || cg.truncated.at(-1) ? ["CLIP: 77 tokens"] : []),
      ...(t?.truncated.at(-1) ? [`T5: ${length} tokens`] : []),
    ];
  }
  if (hidden.dim !== transformer.joint_attention_dim || pooled.dim !== transformer.pooled_projection_dim)
    throw new AppError(
      "internal",
      `Model ${task.model}: text conditioning [${hidden.dim}], pooled [${pooled.dim}] do not match the transformer's joint_attention_dim ${transformer.joint_attention_dim}, pooled_projection_dim ${transformer.pooled_projection_dim}.`,
    );

  const denoiser = await getSession(files.denoiser, settings);
  const io = (name: string) => find(denoiser.inputs, name);
  const need = (name: string) => {
    const g = io(name);
    if (!g) throw new AppError("internal", `Model ${task.model}: the transformer has no ${name} input.`);
    return g;
  };
  const hiddenIo = need("encoder_hidden_states");
  const pooledIo = need("pooled_projections");
  const fixed: Record<string, ort.Tensor> = {
    [hiddenIo.name]: toOrtTensor(hidden.data, [batch, hidden.sequence, hidden.dim], hiddenIo.type),
    [pooledIo.name]: toOrtTensor(pooled.data, [batch, pooled.dim], pooledIo.type),
  };
  if (flux) {
    const [, , h, w] = shape as [number, number, number, number];
    const p = files.geometry.patchSize;
    const imgIo = need("img_ids");
    const txtIo = need("txt_ids");
    fixed[imgIo.name] = toOrtTensor(fluxImageIds(h / p, w / p), [(h / p) * (w / p), 3], imgIo.type);
    fixed[txtIo.name] = toOrtTensor(fluxTextIds(hidden.sequence), [hidden.sequence, 3], txtIo.type);
    const guidanceIo = io("guidance");
    if (guidanceIo)
      fixed[guidanceIo.name] = toOrtTensor(
        new Float32Array(batch).fill(params.guidance_scale),
        guidanceIo.shape.length === 0 ? [] : [batch],
        guidanceIo.type,
      );
  }
  return {
    session: denoiser.session,
    fixed,
    sample: need("hidden_states"),
    timestep: need("timestep"),
    timestepValue: (t) => transformerTimestep(family, t),
    timestepPerRow: true,
    output: (find(denoiser.outputs, "out_hidden_states") ?? denoiser.outputs[0]!).name,
    cfg,
    truncated: cutBy.length > 0,
    ...(cutBy.length > 0 ? { truncatedBy: cutBy.join(", ") } : {}),
  };
}

/** Runs one generation to RGB pixels. Throws AppError `canceled` when the cancel flag is set. */
export async function generate(task: GenerateTask, settings: SessionSettings): Promise<GenerateResult> {
  const { files, params, width, height } = task;
  const geometry = files.geometry;
  const shape = latentShape(geometry, width, height);
  const [, channels, h, w] = shape;
  const scaling = { scale: geometry.scalingFactor, shift: geometry.shiftFactor ?? 0 };
  const flow = files.transformer !== null;
  // Image-to-image with strength × steps < 1 denoises nothing (diffusers refuses it): the
  // answer is the init image's VAE round trip.
  const steps = params.num_inference_steps;
  const untouched = task.init !== null && Math.floor(steps * params.strength) === 0;
  const options: SchedulerOptions = { strength: task.init && !untouched ? params.strength : 1 };
  if (flow) {
    // Flux passes σs = linspace(1, 1/n, n) and shifts them by the image's token count (dev).
    options.flowSigmas = files.layout.name === "flux" ? "flux" : "default";
    const side = sizePatch(files);
    options.imageSeqLen = Math.floor(h / side) * Math.floor(w / side);
  }
  const scheduler = createScheduler(files.scheduler, steps, params.scheduler, options);
  const denoising = flow ? await flowDenoising(task, shape, settings) : await unetDenoising(task, settings);
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

  const { sample, timestep, fixed, cfg } = denoising;
  const batch = cfg ? 2 : 1;
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
    const out = await denoising.session.run(
      {
        ...fixed,
        [sample.name]: toOrtTensor(input, [batch, ...packed.shape.slice(1)], sample.type),
        [timestep.name]: timestepTensor(
          denoising.timestepValue(t),
          timestep,
          denoising.timestepPerRow ? batch : 1,
        ),
      },
      [denoising.output],
    );
    const pred = fromOrtTensor(out[denoising.output] as ort.Tensor).data;
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
        msg.preview = { data: latentPreview(latents, channels, h, w, files.family), width: w, height: h };
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
  return {
    kind: "pixels",
    data: rgb.data,
    frames: 1,
    width,
    height,
    truncated: denoising.truncated,
    ...(denoising.truncatedBy ? { truncatedBy: denoising.truncatedBy } : {}),
  };
}
