// Entry of a session thread. onnxruntime-node's session.run blocks its thread for the whole run,
// so every session lives here, and the numeric pre/postprocessing runs here too: the main thread
// stays free for BullMQ's lock renewal.
import { workerData } from "node:worker_threads";
import { AppError, decodeToFloat32, encodeFromFloat32, unpackFluxLatents } from "@hybrid/protocol";
import { move, transferableSymbol, valueSymbol } from "piscina";
import { type GenerateResult, generate } from "./diffusion/pipeline.ts";
import { fromOrtTensor, toOrtTensor } from "./ort-tensor.ts";
import { imageToNCHW, sliceFirst, toUint8ChannelsLast, toUnitRangeNCHW } from "./postprocess.ts";
import { gaussian } from "./random.ts";
import { getSession, type SessionSettings } from "./session-cache.ts";
import type {
  BatchTask,
  DecodeTask,
  DescribeResult,
  EncodeTask,
  RunResult,
  ThreadTask,
} from "./vae-tasks.ts";

const settings = workerData as SessionSettings;

async function describe(path: string): Promise<DescribeResult> {
  const { inputs, outputs, providers } = await getSession(path, settings);
  return { inputs, outputs, providers };
}

/**
 * Runs a graph's first input → first output; returns the output as float32 with its name and
 * how long `session.run` took.
 */
async function run(path: string, values: Float32Array, shape: number[]) {
  const { session, inputs, outputs } = await getSession(path, settings);
  const input = inputs[0]!;
  const output = outputs[0]!;
  const feeds = { [input.name]: toOrtTensor(values, shape, input.type) };
  const t0 = performance.now();
  const result = await session.run(feeds, [output.name]);
  const modelMs = performance.now() - t0;
  return {
    name: output.name,
    modelMs,
    ...fromOrtTensor(result[output.name] as Parameters<typeof fromOrtTensor>[0]),
  };
}

/** A float tensor out of `session.run` (its output's name), with the time the run took. */
interface ModelOutput {
  name: string;
  data: Float32Array;
  shape: number[];
  modelMs: number;
}

/** A decode's model input: the latents unpacked, cut to the first image if that is all it answers, unscaled. */
function decodeInput(t: DecodeTask): { values: Float32Array; shape: number[] } {
  let values = decodeToFloat32(t.input, t.shape, t.dtype);
  let shape = t.shape;
  if (t.packed) ({ data: values, shape } = unpackFluxLatents(values, shape, t.packed.height, t.packed.width));
  // An image answer carries only the first image of the batch: don't decode the others.
  if (t.output.kind === "image") ({ data: values, shape } = sliceFirst(values, shape));
  if (t.scaling) {
    const { scale, shift } = t.scaling;
    for (let i = 0; i < values.length; i++) values[i] = values[i]! / scale + shift;
  }
  return { values, shape };
}

/** A decode's answer from the decoder's output. */
function decodeAnswer(t: DecodeTask, out: ModelOutput): RunResult {
  switch (t.output.kind) {
    case "image":
    case "mp4": {
      let rgb = toUint8ChannelsLast(out.data, out.shape);
      // A video model asked for an image answers its first frame: send back only that one.
      if (t.output.kind === "image") rgb = sliceFirst(rgb.data, rgb.shape);
      const [frames, height, width] = rgb.shape as [number, number, number];
      return { kind: "pixels", data: rgb.data, frames, height, width, modelMs: out.modelMs };
    }
    case "uint8": {
      const rgb = toUint8ChannelsLast(out.data, out.shape);
      return { kind: "tensor", bytes: rgb.data, shape: rgb.shape, dtype: "uint8", modelMs: out.modelMs };
    }
    case "unit-float16": {
      const unit = toUnitRangeNCHW(out.data, out.shape);
      return {
        kind: "tensor",
        bytes: encodeFromFloat32(unit.data, "float16"),
        shape: unit.shape,
        dtype: "float16",
        modelMs: out.modelMs,
      };
    }
    case "raw":
      return {
        kind: "tensor",
        bytes: encodeFromFloat32(out.data, t.output.dtype),
        shape: out.shape,
        dtype: t.output.dtype,
        modelMs: out.modelMs,
      };
  }
}

async function decode(t: DecodeTask): Promise<RunResult> {
  const x = decodeInput(t);
  return decodeAnswer(t, await run(t.path, x.values, x.shape));
}

/**
 * Runs several tasks' inputs as one batch along axis 0 and hands each task its own slice of
 * the output. The model computes each batch entry on its own, so every slice is bit-identical
 * to a run of that task alone (tests compare bytes).
 */
async function runBatched(path: string, inputs: { values: Float32Array; shape: number[] }[]) {
  const rest = inputs[0]!.shape.slice(1);
  const total = inputs.reduce((n, x) => n + x.shape[0]!, 0);
  const values = new Float32Array(inputs.reduce((n, x) => n + x.values.length, 0));
  let at = 0;
  for (const x of inputs) {
    values.set(x.values, at);
    at += x.values.length;
  }
  const out = await run(path, values, [total, ...rest]);
  const per = out.data.length / total;
  let first = 0;
  return inputs.map((x): ModelOutput => {
    const n = x.shape[0]!;
    const data = out.data.subarray(first * per, (first + n) * per);
    first += n;
    return { name: out.name, data, shape: [n, ...out.shape.slice(1)], modelMs: out.modelMs };
  });
}

/** An encode's model input: `[B, 3, H, W]` floats in [-1, 1]. */
function encodeInput(t: EncodeTask): { values: Float32Array; shape: number[] } {
  if (t.input.kind === "rgb")
    return {
      values: imageToNCHW(t.input.data, t.input.width, t.input.height, 3),
      shape: [1, 3, t.input.height, t.input.width],
    };
  return { values: decodeToFloat32(t.input.bytes, t.input.shape, t.input.dtype), shape: t.input.shape };
}

async function encode(t: EncodeTask): Promise<RunResult> {
  const x = encodeInput(t);
  return encodeAnswer(t, await run(t.path, x.values, x.shape));
}

/** An encode's latents from the encoder's output (sampled with the task's own seed). */
function encodeAnswer(t: EncodeTask, out: ModelOutput): RunResult {
  const [b, c2, h, w] = out.shape as [number, number, number, number];
  let latents: Float32Array;
  let channels: number;
  if (out.name === "latent_parameters") {
    // Mean then log-variance along channels (diffusers' DiagonalGaussianDistribution).
    channels = c2 / 2;
    const plane = h * w;
    latents = new Float32Array(b * channels * plane);
    const noise = t.sample ? gaussian(latents.length, t.seed) : null;
    for (let n = 0; n < b; n++) {
      for (let c = 0; c < channels; c++) {
        const mean = (n * c2 + c) * plane;
        const logvar = (n * c2 + channels + c) * plane;
        const dst = (n * channels + c) * plane;
        for (let i = 0; i < plane; i++) {
          let v = out.data[mean + i]!;
          if (noise)
            v += Math.exp(0.5 * Math.min(20, Math.max(-30, out.data[logvar + i]!))) * noise[dst + i]!;
          latents[dst + i] = v;
        }
      }
    }
  } else {
    channels = c2;
    latents = out.data;
  }
  if (t.scaling) {
    const { scale, shift } = t.scaling;
    for (let i = 0; i < latents.length; i++) latents[i] = (latents[i]! - shift) * scale;
  }
  return {
    kind: "tensor",
    bytes: encodeFromFloat32(latents, t.outputDtype),
    shape: [b, channels, h, w],
    dtype: t.outputDtype,
    modelMs: out.modelMs,
  };
}

/**
 * Hands the answer's pixel or tensor bytes to the main thread by moving their buffer instead of
 * copying it (a 512² image is 786 KB). Small arrays may sit in Node's shared buffer pool, which
 * cannot be moved: those are copied, as is cheap for them.
 */
function transferred<T extends RunResult | GenerateResult>(result: T): T {
  const view = "bytes" in result ? result.bytes : result.data;
  if (view.byteLength < 64 * 1024 || !(view.buffer instanceof ArrayBuffer)) return result;
  const buffer = view.buffer;
  return move({
    get [transferableSymbol]() {
      return [buffer];
    },
    get [valueSymbol]() {
      return result;
    },
  }) as unknown as T;
}

async function batch(t: BatchTask): Promise<RunResult[]> {
  if (t.tasks.length === 0) return [];
  const path = t.tasks[0]!.path;
  if (t.tasks[0]!.op === "decode") {
    const tasks = t.tasks as DecodeTask[];
    const outs = await runBatched(path, tasks.map(decodeInput));
    return tasks.map((task, k) => decodeAnswer(task, outs[k]!));
  }
  const tasks = t.tasks as EncodeTask[];
  const outs = await runBatched(path, tasks.map(encodeInput));
  return tasks.map((task, k) => encodeAnswer(task, outs[k]!));
}

/** {@link transferred} for the answers of a batch: each distinct buffer moves once. */
function transferredAll(results: RunResult[]): RunResult[] {
  const buffers = new Set<ArrayBuffer>();
  for (const r of results) {
    const view = "bytes" in r ? r.bytes : r.data;
    if (view.byteLength >= 64 * 1024 && view.buffer instanceof ArrayBuffer) buffers.add(view.buffer);
  }
  if (buffers.size === 0) return results;
  return move({
    get [transferableSymbol]() {
      return [...buffers];
    },
    get [valueSymbol]() {
      return results;
    },
  }) as unknown as RunResult[];
}

/** Piscina calls this for every task sent to the pool. */
export default async function handle(
  task: ThreadTask,
): Promise<DescribeResult | RunResult | RunResult[] | GenerateResult> {
  switch (task.op) {
    case "describe":
      return describe(task.path);
    case "decode":
      return transferred(await decode(task));
    case "encode":
      return transferred(await encode(task));
    case "batch":
      return transferredAll(await batch(task));
    case "generate":
      try {
        return transferred(await generate(task, settings));
      } finally {
        task.progress?.close();
      }
    default:
      throw new AppError("internal", "Unknown thread task.");
  }
}
