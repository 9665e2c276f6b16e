import type { MessagePort } from "node:worker_threads";
import type { DecodeOutput, GenerateParams, InputDType, Scaling } from "@hybrid/protocol";
import type { PipelineDir } from "../model-dir.ts";
import type { GraphIO } from "./session-cache.ts";

// The protocol between the runtimes (main thread) and a session thread: every task kind a
// thread runs and what it answers. Plain data: messages are structured-cloned.

/** A task for a session thread. */
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
  /** The providers the session runs with; the first is the one its graph runs on. */
  providers: string[];
  /** The providers asked for, `cpu` last. */
  requested: string[];
  /** Why the first provider asked for is not in use (null: it is). */
  fallback: string | null;
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

/** A generation as sent to a session thread. Plain data plus a port and a shared flag. */
export interface GenerateTask {
  op: "generate";
  /** The model id, for messages. */
  model: string;
  files: PipelineDir;
  params: GenerateParams;
  /** The size to generate (the request's, or the init image's for image-to-image). */
  width: number;
  height: number;
  /** Image-to-image: the init image as RGB bytes, already at `width` × `height`. */
  init: { data: Uint8Array; width: number; height: number } | null;
  /** Receives {@link ProgressMessage}s, one per step. */
  progress: MessagePort | null;
  /** Set to 1 by the main thread to cancel; checked before every step. */
  cancel: Int32Array | null;
}

export interface ProgressMessage {
  /** Set on the message after the last step: no report follows. */
  done?: true;
  step: number;
  total: number;
  /** RGB bytes at latent resolution (the image's size over the VAE's spatial factor). */
  preview?: { data: Uint8Array; width: number; height: number };
}

export interface GenerateResult {
  kind: "pixels";
  data: Uint8Array;
  frames: 1;
  width: number;
  height: number;
  /** The prompt was longer than a text encoder takes and was cut. */
  truncated: boolean;
  /** What cut it, when not CLIP's 77 tokens alone (Flux and SD3: "T5's 512 tokens"...). */
  truncatedBy?: string;
}
