import { AppError, float16ToFloat32, float32ToFloat16 } from "@hybrid/protocol";
import * as ort from "onnxruntime-node";

/** Wraps float32 values as a tensor of the graph input's element type. */
export function toOrtTensor(values: Float32Array, shape: readonly number[], type: string): ort.Tensor {
  switch (type) {
    case "float32":
      return new ort.Tensor("float32", values, shape);
    case "float16":
      return new ort.Tensor("float16", float32ToFloat16(values), shape);
    default:
      throw new AppError("internal", `The model takes ${type} input, which this server cannot feed.`);
  }
}

/** Reads a float output tensor as float32 values. */
export function fromOrtTensor(t: ort.Tensor): { data: Float32Array; shape: number[] } {
  const shape = t.dims.map(Number);
  switch (t.type) {
    case "float32":
      return { data: t.data as Float32Array, shape };
    case "float16": {
      const raw = t.data;
      // Node builds with Float16Array hand those out; otherwise the bits come as Uint16Array.
      const bits =
        raw instanceof Uint16Array ? raw : new Uint16Array((raw as unknown as ArrayBufferView).buffer);
      return { data: float16ToFloat32(bits), shape };
    }
    default:
      throw new AppError("internal", `The model returned ${t.type}, which this server cannot read.`);
  }
}
