import { z } from "zod";
import { AppError } from "./errors.ts";
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from "./half.ts";

/** Element types on the wire. `uint8` appears only in answers (postprocessed images). */
export const DType = z.enum(["float32", "float16", "bfloat16", "uint8"]);
export type DType = z.infer<typeof DType>;
/** Element types a client may send latents or images in. */
export const InputDType = z.enum(["float32", "float16", "bfloat16"]);
export type InputDType = z.infer<typeof InputDType>;

export const BYTES_PER_ELEMENT: Record<DType, number> = { float32: 4, float16: 2, bfloat16: 2, uint8: 1 };

/** Size limits applied before any allocation. Users tune them through the apps' settings. */
export interface TensorLimits {
  /** Max elements in one input tensor. @defaultValue 2^26 (64 Mi, 256 MiB as float32) */
  maxElements: number;
  /** Max pixels (height × width) of one output image or frame. @defaultValue 2048 × 2048 */
  maxOutputPixels: number;
  /** Max output frames of one video. @defaultValue 129 (HunyuanVideo's longest clip) */
  maxFrames: number;
  /** Max images in one batch. @defaultValue 16 */
  maxBatch: number;
  /**
   * Max output pixels of one job, all images and frames together (batch × frames × height ×
   * width): the per-image caps above let a batch of 16 at 2048² through, 384 MiB as float16.
   * @defaultValue 16 × 1024 × 1024 (a full batch at 1024², 64 frames at 512²)
   */
  maxJobPixels: number;
  /**
   * Max bytes of one job's answer (what sits in Redis until it is fetched). Tensor answers are
   * checked before the job is queued, compressed ones (JPEG, PNG, mp4) once encoded.
   * @defaultValue 128 MiB (above the largest tensor answer within `maxJobPixels`: 96 MiB of float16)
   */
  maxOutputBytes: number;
}

export const DEFAULT_LIMITS: TensorLimits = {
  maxElements: 2 ** 26,
  maxOutputPixels: 2048 * 2048,
  maxFrames: 129,
  maxBatch: 16,
  maxJobPixels: 16 * 1024 * 1024,
  maxOutputBytes: 128 * 1024 * 1024,
};

/**
 * Refuses a job whose output is over the per-job caps, naming the cap and its setting. `pixels`:
 * every output image and frame together; `bytes`: the answer's size when known before running
 * (a tensor), else null (checked on the worker once encoded, see {@link checkOutputBytes}).
 */
export function checkJobOutput(
  what: string,
  pixels: number,
  bytes: number | null,
  limits: Pick<TensorLimits, "maxJobPixels" | "maxOutputBytes">,
): void {
  if (pixels > limits.maxJobPixels)
    throw new AppError(
      "too_large",
      `${what} is ${pixels} output pixels, over the limit of ${limits.maxJobPixels} pixels per job (MAX_JOB_PIXELS: batch × frames × height × width).`,
      { details: { limit: "MAX_JOB_PIXELS", max: limits.maxJobPixels, requested: pixels } },
    );
  if (bytes !== null) checkOutputBytes(what, bytes, limits);
}

/** Refuses an answer of more than `maxOutputBytes` (a 413: never retried). */
export function checkOutputBytes(
  what: string,
  bytes: number,
  limits: Pick<TensorLimits, "maxOutputBytes">,
): void {
  if (bytes > limits.maxOutputBytes)
    throw new AppError(
      "too_large",
      `${what} is ${bytes} bytes, over the limit of ${limits.maxOutputBytes} bytes per answer (MAX_OUTPUT_BYTES).`,
      { details: { limit: "MAX_OUTPUT_BYTES", max: limits.maxOutputBytes, requested: bytes } },
    );
}

/** A dense little-endian C-order tensor as it travels on the wire. */
export interface WireTensor {
  dtype: DType;
  shape: number[];
  bytes: Uint8Array;
}

/** Number of elements of a validated shape; throws `invalid_shape` / `too_large`. */
export function elementCount(
  shape: readonly number[],
  limits: Pick<TensorLimits, "maxElements"> = DEFAULT_LIMITS,
) {
  if (shape.length === 0) throw new AppError("invalid_shape", "shape must have at least one dimension.");
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d <= 0) {
      throw new AppError(
        "invalid_shape",
        `shape ${JSON.stringify(shape)} has a dimension that is not a positive integer.`,
      );
    }
    n *= d;
    if (n > limits.maxElements) {
      throw new AppError(
        "too_large",
        `shape ${JSON.stringify(shape)} has more than the ${limits.maxElements} elements allowed.`,
      );
    }
  }
  return n;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The bytes as an aligned, host-order view (copies only when the body is misaligned or on big-endian hosts). */
function aligned(bytes: Uint8Array, width: number): ArrayBuffer {
  if (littleEndian && bytes.byteOffset % width === 0) {
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  if (!littleEndian) {
    for (let i = 0; i < copy.length; i += width) copy.subarray(i, i + width).reverse();
  }
  return copy.buffer;
}

/** Checks dtype, shape and byte length together; returns the element count. */
export function checkTensorBytes(
  byteLength: number,
  shape: readonly number[],
  dtype: DType,
  limits: Pick<TensorLimits, "maxElements"> = DEFAULT_LIMITS,
): number {
  const n = elementCount(shape, limits);
  const expected = n * BYTES_PER_ELEMENT[dtype];
  if (byteLength !== expected) {
    throw new AppError(
      "invalid_body_length",
      `Body has ${byteLength} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${expected}.`,
      { details: { expected, received: byteLength } },
    );
  }
  return n;
}

/** Decodes wire bytes of any dtype into float32 values, validating length first. */
export function decodeToFloat32(
  bytes: Uint8Array,
  shape: readonly number[],
  dtype: DType,
  limits?: Pick<TensorLimits, "maxElements">,
): Float32Array {
  checkTensorBytes(bytes.byteLength, shape, dtype, limits);
  switch (dtype) {
    case "float32":
      return new Float32Array(aligned(bytes, 4));
    case "float16":
      return float16ToFloat32(new Uint16Array(aligned(bytes, 2)));
    case "bfloat16":
      return bfloat16ToFloat32(new Uint16Array(aligned(bytes, 2)));
    case "uint8":
      return Float32Array.from(bytes);
  }
}

/** Encodes float32 values as wire bytes of `dtype` (uint8 saturates and rounds). */
export function encodeFromFloat32(values: Float32Array, dtype: DType): Uint8Array {
  switch (dtype) {
    case "float32": {
      const out = new Float32Array(values);
      return toBytes(out);
    }
    case "float16":
      return toBytes(float32ToFloat16(values));
    case "bfloat16":
      return toBytes(float32ToBfloat16(values));
    case "uint8":
      return Uint8Array.from(values, (v) =>
        Number.isNaN(v) ? 0 : Math.min(255, Math.max(0, Math.round(v))),
      );
  }
}

/** Little-endian bytes of a typed array, without copying on little-endian hosts. */
export function toBytes(a: Float32Array | Uint16Array | Uint8Array): Uint8Array {
  const view = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (littleEndian || a.BYTES_PER_ELEMENT === 1) return view;
  const copy = Uint8Array.from(view);
  for (let i = 0; i < copy.length; i += a.BYTES_PER_ELEMENT)
    copy.subarray(i, i + a.BYTES_PER_ELEMENT).reverse();
  return copy;
}
