// The VAE endpoints' tasks as a session thread runs them: wire tensors or images in, the
// model run through the VAE ops, answers (pixels for the main thread to encode, or wire tensors)
// out. Batched tasks get exactly the bytes they would get alone.
import { decodeToFloat32, encodeFromFloat32, unpackFluxLatents } from "@hybrid/protocol";
import type { SessionSettings } from "../sessions/session-cache.ts";
import type { BatchTask, DecodeTask, EncodeTask, RunResult } from "../sessions/thread-protocol.ts";
import { encoderLatents, type ModelOutput, runGraph, scaleLatents, unscaleLatents } from "./ops.ts";
import { imageToNCHW, sliceFirst, toUint8ChannelsLast, toUnitRangeNCHW } from "./postprocess.ts";

/** A decode's model input: the latents unpacked, cut to the first image if that is all it answers, unscaled. */
function decodeInput(t: DecodeTask): { values: Float32Array; shape: number[] } {
  let values = decodeToFloat32(t.input, t.shape, t.dtype);
  let shape = t.shape;
  if (t.packed) ({ data: values, shape } = unpackFluxLatents(values, shape, t.packed.height, t.packed.width));
  // An image answer carries only the first image of the batch: don't decode the others.
  if (t.output.kind === "image") ({ data: values, shape } = sliceFirst(values, shape));
  if (t.scaling) unscaleLatents(values, t.scaling);
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

/** Runs a decode task: latents in, pixels or a wire tensor out. */
export async function decode(t: DecodeTask, settings: SessionSettings): Promise<RunResult> {
  const x = decodeInput(t);
  return decodeAnswer(t, await runGraph(t.path, x.values, x.shape, settings));
}

/**
 * Runs several tasks' inputs as one batch along axis 0 and hands each task its own slice of
 * the output. The model computes each batch entry on its own, so every slice is bit-identical
 * to a run of that task alone (tests compare bytes).
 */
async function runBatched(
  path: string,
  inputs: { values: Float32Array; shape: number[] }[],
  settings: SessionSettings,
) {
  const rest = inputs[0]!.shape.slice(1);
  const total = inputs.reduce((n, x) => n + x.shape[0]!, 0);
  const values = new Float32Array(inputs.reduce((n, x) => n + x.values.length, 0));
  let at = 0;
  for (const x of inputs) {
    values.set(x.values, at);
    at += x.values.length;
  }
  const out = await runGraph(path, values, [total, ...rest], settings);
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

/** Runs an encode task: an image or image tensor in, latents as a wire tensor out. */
export async function encode(t: EncodeTask, settings: SessionSettings): Promise<RunResult> {
  const x = encodeInput(t);
  return encodeAnswer(t, await runGraph(t.path, x.values, x.shape, settings));
}

/** An encode's latents from the encoder's output (sampled with the task's own seed). */
function encodeAnswer(t: EncodeTask, out: ModelOutput): RunResult {
  const latents = encoderLatents(out, t.sample ? { seed: t.seed } : null);
  if (t.scaling) scaleLatents(latents.data, t.scaling);
  return {
    kind: "tensor",
    bytes: encodeFromFloat32(latents.data, t.outputDtype),
    shape: latents.shape,
    dtype: t.outputDtype,
    modelMs: out.modelMs,
  };
}

/** Runs same-shaped decodes or encodes as one batch; one answer per task, in order. */
export async function batch(t: BatchTask, settings: SessionSettings): Promise<RunResult[]> {
  if (t.tasks.length === 0) return [];
  const path = t.tasks[0]!.path;
  if (t.tasks[0]!.op === "decode") {
    const tasks = t.tasks as DecodeTask[];
    const outs = await runBatched(path, tasks.map(decodeInput), settings);
    return tasks.map((task, k) => decodeAnswer(task, outs[k]!));
  }
  const tasks = t.tasks as EncodeTask[];
  const outs = await runBatched(path, tasks.map(encodeInput), settings);
  return tasks.map((task, k) => encodeAnswer(task, outs[k]!));
}
