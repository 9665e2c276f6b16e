import type { DecodeOutput, InputDType, Scaling } from "@hybrid/protocol";
import type { GenerateTask } from "./diffusion/pipeline.ts";
import type { GraphIO } from "./session-cache.ts";

/** Messages between the runtimes (main thread) and a session thread. Plain data: they are structured-cloned. */
export type ThreadTask = DescribeTask | DecodeTask | EncodeTask | GenerateTask | BatchTask;

/**
 * Decodes (or encodes) of one model with the same shape after the batch axis, dtype and
 * options, run as one batch along axis 0; each task's answer is what it would get alone.
 */
export type BatchTask = { op: "batch"; tasks: DecodeTask[] } | { op: "batch"; tasks: EncodeTask[] };

export interface DescribeTask {
  op: "describe";
  path: string;
}

export interface DecodeTask {
  op: "decode";
  path: string;
  input: Uint8Array;
  shape: number[];
  dtype: InputDType;
  scaling: Scaling;
  packed: { height: number; width: number } | null;
  output: DecodeOutput;
}

export interface EncodeTask {
  op: "encode";
  path: string;
  /** An image as HWC RGB bytes, or a `[B, 3, H, W]` tensor in [-1, 1]. */
  input:
    | { kind: "rgb"; data: Uint8Array; width: number; height: number }
    | { kind: "tensor"; bytes: Uint8Array; shape: number[]; dtype: InputDType };
  scaling: Scaling;
  sample: boolean;
  seed: number | null;
  outputDtype: "float32" | "float16" | "bfloat16";
}

export interface DescribeResult {
  inputs: GraphIO[];
  outputs: GraphIO[];
  providers: string[];
}

/**
 * Either pixels for the main thread to encode (image, mp4) or a finished wire tensor, with the
 * time `session.run` took (the rest of the task is pre/postprocessing).
 */
export type RunResult = { modelMs: number } & (
  | { kind: "pixels"; data: Uint8Array; frames: number; height: number; width: number }
  | {
      kind: "tensor";
      bytes: Uint8Array;
      shape: number[];
      dtype: "float32" | "float16" | "bfloat16" | "uint8";
    }
);
