import {
  BYTES_PER_ELEMENT,
  bfloat16ToFloat32,
  DType,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  type InputDType,
  toBytes,
} from "@hybrid/protocol";

/** A tensor to send (latents to decode, an image tensor to encode): dense, row-major (C order). */
export interface TensorInput {
  /**
   * The elements. A `Float32Array` holds values (converted to `dtype` on the way out); a
   * `Uint16Array` holds float16 or bfloat16 bit patterns as they are; a `Uint8Array` is the
   * raw little-endian wire bytes of `dtype`.
   */
  data: Float32Array | Uint16Array | Uint8Array;
  shape: readonly number[];
  /**
   * The element type on the wire.
   * @defaultValue `"float32"` for a `Float32Array`, `"float16"` for a `Uint16Array`; required for a `Uint8Array`
   */
  dtype?: InputDType;
}

/** A tensor as it goes on the wire: its bytes and the `shape`/`dtype` query values describing them. */
export interface WireTensorInput {
  bytes: Uint8Array;
  shape: number[];
  dtype: InputDType;
}

/** A tensor the service answered with. Floats of any wire dtype come as float32 values. */
export type TensorOutput =
  | { kind: "tensor"; dtype: "uint8"; shape: number[]; data: Uint8Array }
  | { kind: "tensor"; dtype: "float32" | "float16" | "bfloat16"; shape: number[]; data: Float32Array };

function elements(shape: readonly number[]): number {
  if (shape.length === 0) throw new RangeError("A tensor shape needs at least one dimension.");
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d <= 0)
      throw new RangeError(`Shape ${JSON.stringify(shape)} has a dimension that is not a positive integer.`);
    n *= d;
  }
  return n;
}

/** Encodes a {@link TensorInput} as wire bytes; throws a `TypeError`/`RangeError` on a mismatch. */
export function encodeTensor(t: TensorInput): WireTensorInput {
  const n = elements(t.shape);
  const shape = [...t.shape];
  let dtype: InputDType;
  let bytes: Uint8Array;
  if (t.data instanceof Float32Array) {
    dtype = t.dtype ?? "float32";
    if (t.data.length !== n) throw lengthError(t.data.length, shape);
    bytes =
      dtype === "float32"
        ? toBytes(t.data)
        : toBytes(dtype === "float16" ? float32ToFloat16(t.data) : float32ToBfloat16(t.data));
  } else if (t.data instanceof Uint16Array) {
    dtype = t.dtype ?? "float16";
    if (dtype === "float32")
      throw new TypeError(
        "A Uint16Array holds float16 or bfloat16 bits; pass float32 values as a Float32Array.",
      );
    if (t.data.length !== n) throw lengthError(t.data.length, shape);
    bytes = toBytes(t.data);
  } else {
    if (!t.dtype) throw new TypeError("Raw tensor bytes (a Uint8Array) need a dtype.");
    dtype = t.dtype;
    const expected = n * BYTES_PER_ELEMENT[dtype];
    if (t.data.byteLength !== expected)
      throw new RangeError(
        `${t.data.byteLength} bytes do not fit shape ${JSON.stringify(shape)} of ${dtype} (${expected} bytes).`,
      );
    bytes = t.data;
  }
  return { bytes, shape, dtype };
}

const lengthError = (length: number, shape: number[]) =>
  new RangeError(`${length} elements do not fit shape ${JSON.stringify(shape)}.`);

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A host-order, aligned copy of little-endian wire bytes, `width` bytes per element. */
function hostOrder(bytes: Uint8Array, width: number): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  if (!littleEndian && width > 1)
    for (let i = 0; i < copy.length; i += width) copy.subarray(i, i + width).reverse();
  return copy.buffer;
}

/**
 * Reads a tensor answer: the body and its `shape` (a JSON array) and `dtype` headers, as
 * diffusers does (`torch.frombuffer(...).reshape(json.loads(shape))`). float16 and bfloat16 are
 * widened to float32 (exactly); uint8 stays bytes.
 */
export function decodeTensor(
  bytes: Uint8Array,
  shapeHeader: string | null,
  dtypeHeader: string | null,
): TensorOutput {
  let shape: unknown;
  try {
    shape = JSON.parse(shapeHeader ?? "");
  } catch {
    shape = undefined;
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw new TypeError(`The answer's shape header is not a list of sizes: ${shapeHeader}`);
  const dims = shape as number[];
  const parsed = DType.safeParse(dtypeHeader);
  if (!parsed.success) throw new TypeError(`The answer's dtype header is not a known dtype: ${dtypeHeader}`);
  const dtype = parsed.data;
  const n = dims.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== n * BYTES_PER_ELEMENT[dtype])
    throw new TypeError(
      `The answer has ${bytes.byteLength} bytes; shape ${JSON.stringify(dims)} of ${dtype} needs ${n * BYTES_PER_ELEMENT[dtype]}.`,
    );
  switch (dtype) {
    case "uint8":
      return { kind: "tensor", dtype, shape: dims, data: bytes };
    case "float32":
      return { kind: "tensor", dtype, shape: dims, data: new Float32Array(hostOrder(bytes, 4)) };
    case "float16":
      return {
        kind: "tensor",
        dtype,
        shape: dims,
        data: float16ToFloat32(new Uint16Array(hostOrder(bytes, 2))),
      };
    case "bfloat16":
      return {
        kind: "tensor",
        dtype,
        shape: dims,
        data: bfloat16ToFloat32(new Uint16Array(hostOrder(bytes, 2))),
      };
  }
}
