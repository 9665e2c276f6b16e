// Numeric pre/postprocessing around the VAE: these loops touch every pixel of every answer, so
// each is one pass over precomputed plane offsets, with no per-pixel allocation or branching on
// the layout inside the inner loop.

/** A dense float tensor, row-major. */
export interface FloatTensor {
  data: Float32Array;
  shape: number[];
}

/** A dense uint8 tensor, row-major. */
export interface Uint8Tensor {
  data: Uint8Array;
  shape: number[];
}

/** The decoder output seen as `images` RGB images of `plane` pixels each. */
interface PixelLayout {
  /** Images in the answer: the batch for `[B,3,H,W]`, batch × frames for `[B,3,F,H,W]`. */
  images: number;
  /** Frames per batch entry (1 for images): the channel planes of one frame are `frames * plane` apart. */
  frames: number;
  height: number;
  width: number;
  plane: number;
}

function pixelLayout(x: Float32Array, shape: readonly number[]): PixelLayout {
  let batch: number;
  let channels: number;
  let frames: number;
  let height: number;
  let width: number;
  if (shape.length === 4) {
    [batch, channels, height, width] = shape as [number, number, number, number];
    frames = 1;
  } else if (shape.length === 5) {
    [batch, channels, frames, height, width] = shape as [number, number, number, number, number];
  } else {
    throw new RangeError(`Expected a [B,3,H,W] or [B,3,F,H,W] tensor, got shape [${shape.join(", ")}].`);
  }
  if (channels !== 3) throw new RangeError(`Expected 3 colour channels, got ${channels}.`);
  const plane = height * width;
  const expected = batch * 3 * frames * plane;
  if (x.length !== expected) {
    throw new RangeError(`Shape [${shape.join(", ")}] needs ${expected} values, got ${x.length}.`);
  }
  return { images: batch * frames, frames, height, width, plane };
}

/**
 * diffusers' `VaeImageProcessor.denormalize` for one value: `x / 2 + 0.5` clamped to [0, 1].
 * NaN maps to 0, so a broken decode shows as black instead of leaking NaN downstream.
 */
export function denormalizeValue(x: number): number {
  const v = x * 0.5 + 0.5;
  // `v > 0` is false for NaN, which therefore falls through to 0.
  return v > 0 ? Math.min(v, 1) : 0;
}

/** {@link denormalizeValue} over a whole tensor, into a new array (layout unchanged). */
export function denormalize(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]! * 0.5 + 0.5;
    out[i] = v > 0 ? Math.min(v, 1) : 0;
  }
  return out;
}

/**
 * Decoder output in [-1, 1] to 8-bit RGB, channels last: image `[B,3,H,W]` → `[B,H,W,3]`,
 * video `[B,3,F,H,W]` → `[B*F,H,W,3]` (the batch flattened into frames).
 *
 * Each value is `round(clamp(x / 2 + 0.5, 0, 1) * 255)` with round half to even, computed in
 * float32 steps like torch/numpy do, so the bytes match diffusers' `numpy_to_pil` exactly
 * (e.g. 0 → 128, -1 → 0, 1 → 255, NaN → 0).
 */
export function toUint8ChannelsLast(x: Float32Array, shape: readonly number[]): Uint8Tensor {
  const { images, frames, height, width, plane } = pixelLayout(x, shape);
  // A Uint8ClampedArray store clamps to [0, 255], maps NaN to 0 and rounds half to even
  // (ECMAScript ToUint8Clamp): exactly numpy's `.round().astype(uint8)` after the clamp, with
  // no branches in the loop. Clamping after `* 255` equals clamping before, since it is monotonic.
  const out = new Uint8ClampedArray(images * plane * 3);
  const channelStride = frames * plane;
  let o = 0;
  for (let n = 0; n < images; n++) {
    const b = Math.floor(n / frames);
    const f = n - b * frames;
    const r0 = b * 3 * channelStride + f * plane;
    const g0 = r0 + channelStride;
    const b0 = g0 + channelStride;
    for (let i = 0; i < plane; i++) {
      // fround per step reproduces float32 arithmetic, so ties round the way torch's do.
      out[o++] = Math.fround(Math.fround(x[r0 + i]! * 0.5 + 0.5) * 255);
      out[o++] = Math.fround(Math.fround(x[g0 + i]! * 0.5 + 0.5) * 255);
      out[o++] = Math.fround(Math.fround(x[b0 + i]! * 0.5 + 0.5) * 255);
    }
  }
  return {
    data: new Uint8Array(out.buffer, out.byteOffset, out.byteLength),
    shape: [images, height, width, 3],
  };
}

/**
 * Decoder output in [-1, 1] to floats in [0, 1] (denormalized), channels first — the answer for
 * `output_type=pil` with `Accept: tensor/binary`. Image `[B,3,H,W]` keeps its layout; video
 * `[B,3,F,H,W]` → `[B*F,3,H,W]` (frames become the batch). NaN maps to 0.
 */
export function toUnitRangeNCHW(x: Float32Array, shape: readonly number[]): FloatTensor {
  const { images, frames, height, width, plane } = pixelLayout(x, shape);
  const out = new Float32Array(x.length);
  const channelStride = frames * plane;
  let o = 0;
  for (let n = 0; n < images; n++) {
    const b = Math.floor(n / frames);
    const f = n - b * frames;
    for (let c = 0; c < 3; c++) {
      const src = (b * 3 + c) * channelStride + f * plane;
      const end = src + plane;
      for (let i = src; i < end; i++) {
        const v = x[i]! * 0.5 + 0.5;
        out[o++] = v > 0 ? Math.min(v, 1) : 0;
      }
    }
  }
  return { data: out, shape: [images, 3, height, width] };
}

/**
 * The first entry along the batch axis, as a view (no copy): `[B, ...rest]` → `[1, ...rest]`.
 * Image answers carry only the first image of the batch.
 */
export function sliceFirst<T extends Float32Array | Uint8Array>(
  x: T,
  shape: readonly number[],
): { data: T; shape: number[] } {
  const batch = shape[0];
  if (batch === undefined || batch < 1)
    throw new RangeError(`Cannot take the first of shape [${shape.join(", ")}].`);
  if (x.length % batch !== 0)
    throw new RangeError(`${x.length} values do not split into ${batch} batch entries.`);
  return { data: x.subarray(0, x.length / batch) as T, shape: [1, ...shape.slice(1)] };
}

// diffusers' VaeImageProcessor computes `2 * (v / 255) - 1` in float32; a table of those 256
// exact values makes the encoder input bit-identical to theirs and costs one lookup per value.
const UNIT_FROM_BYTE = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = 2 * Math.fround(v / 255) - 1;
  return t;
})();

/**
 * Encoder input: 8-bit interleaved pixels `[H,W,channels]` (3 = RGB, 4 = RGBA; alpha is dropped)
 * → `[1,3,H,W]` floats in [-1, 1], i.e. `x / 127.5 - 1`, rounded as diffusers'
 * `2 * (x / 255) - 1` in float32 is (the two differ by at most one float32 ulp).
 */
export function imageToNCHW(rgb: Uint8Array, width: number, height: number, channels: number): Float32Array {
  if (channels !== 3 && channels !== 4) throw new RangeError(`Expected 3 or 4 channels, got ${channels}.`);
  const plane = width * height;
  if (rgb.length !== plane * channels) {
    throw new RangeError(
      `A ${width}x${height}x${channels} image needs ${plane * channels} bytes, got ${rgb.length}.`,
    );
  }
  const out = new Float32Array(plane * 3);
  const lut = UNIT_FROM_BYTE;
  const g0 = plane;
  const b0 = 2 * plane;
  for (let i = 0, s = 0; i < plane; i++, s += channels) {
    out[i] = lut[rgb[s]!]!;
    out[g0 + i] = lut[rgb[s + 1]!]!;
    out[b0 + i] = lut[rgb[s + 2]!]!;
  }
  return out;
}
