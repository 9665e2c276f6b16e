import { DataType, type DataTypeCode, type Dim, OnnxGraphBuilder } from "./onnx-builder.ts";
import { mulberry32 } from "./prng.ts";

/**
 * TensorProto code 6. onnx-builder's DataType lists only the codes the VAE generator needed; the
 * text encoders' int32 input_ids are declared here rather than by editing that shared file.
 */
export const INT32 = 6 as number as DataTypeCode;

/** The float dtype of a graph input or output; "float16" is cast to float32 right at the boundary. */
export type FloatIo = "float32" | "float16";

/**
 * A per-component seed derived from the pipeline seed (FNV-1a over the label), so that changing one
 * component's graph never changes another component's weights.
 */
export function streamSeed(seed: number, label: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Layer helpers over OnnxGraphBuilder for the small transformer/UNet graphs. Every weight is drawn
 * from one seeded stream in graph-building order, so the same seed gives byte-identical models.
 * Initialisation is variance-preserving (`gain` 1 keeps the activation scale); residual branches
 * pass smaller gains so that stacked blocks stay O(1).
 */
export class NnGraph {
  readonly b: OnnxGraphBuilder;
  private readonly rand: () => number;
  private readonly floatConsts = new Map<number, string>();
  private readonly intConsts = new Map<string, string>();

  constructor(name: string, seed: number) {
    this.b = new OnnxGraphBuilder(name);
    this.rand = mulberry32(seed);
  }

  /** Uniform in [-bound, bound]: only the variance matters for keeping activations in range. */
  uniform(n: number, bound: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.rand() * 2 - 1) * bound;
    return out;
  }

  weight(prefix: string, dims: readonly number[], bound: number): string {
    const n = dims.reduce((a, c) => a * c, 1);
    return this.b.addFloatInitializer(this.b.uniqueName(prefix), this.uniform(n, bound), dims);
  }

  filled(prefix: string, dims: readonly number[], value: number): string {
    const n = dims.reduce((a, c) => a * c, 1);
    return this.b.addFloatInitializer(this.b.uniqueName(prefix), new Float32Array(n).fill(value), dims);
  }

  scalar(value: number): string {
    let name = this.floatConsts.get(value);
    if (!name) {
      name = this.b.addFloatInitializer(this.b.uniqueName("const"), new Float32Array([value]), []);
      this.floatConsts.set(value, name);
    }
    return name;
  }

  /** A 1-D int64 constant (shapes, axes, slice bounds). */
  ints(values: readonly number[]): string {
    const key = values.join(",");
    let name = this.intConsts.get(key);
    if (!name) {
      name = this.b.addInt64Initializer(this.b.uniqueName("ints"), values.map(BigInt), [values.length]);
      this.intConsts.set(key, name);
    }
    return name;
  }

  op(opType: string, inputs: readonly string[], attrs: Parameters<OnnxGraphBuilder["op"]>[2] = {}): string {
    return this.b.op(opType, inputs, attrs);
  }

  add(a: string, b: string): string {
    return this.op("Add", [a, b]);
  }

  mul(a: string, b: string): string {
    return this.op("Mul", [a, b]);
  }

  /** x @ W (+ b) over the last axis, W drawn for fan-in `cin`. */
  linear(x: string, cin: number, cout: number, o: { gain?: number; bias?: boolean } = {}): string {
    const w = this.weight("linear.weight", [cin, cout], (o.gain ?? 1) * Math.sqrt(3 / cin));
    const y = this.op("MatMul", [x, w]);
    return o.bias === false ? y : this.add(y, this.weight("linear.bias", [cout], 0.02));
  }

  /** k×k convolution with "same" padding for stride 1 (and ceil(n / 2) outputs for stride 2). */
  conv(x: string, cin: number, cout: number, o: { k?: number; stride?: number; gain?: number } = {}): string {
    const k = o.k ?? 3;
    const stride = o.stride ?? 1;
    const fanIn = cin * k * k;
    const w = this.weight("conv.weight", [cout, cin, k, k], (o.gain ?? 1) * Math.sqrt(3 / fanIn));
    const bias = this.weight("conv.bias", [cout], 0.02);
    const p = (k - 1) / 2;
    return this.op("Conv", [x, w, bias], {
      kernel_shape: { ints: [k, k] },
      pads: { ints: [p, p, p, p] },
      strides: { ints: [stride, stride] },
    });
  }

  silu(x: string): string {
    return this.mul(x, this.op("Sigmoid", [x]));
  }

  /** Exact GELU as PyTorch exports it below opset 20 (no Gelu op): 0.5 x (1 + erf(x / √2)). */
  gelu(x: string): string {
    const erf = this.op("Erf", [this.mul(x, this.scalar(Math.SQRT1_2))]);
    return this.mul(this.mul(x, this.scalar(0.5)), this.add(erf, this.scalar(1)));
  }

  /** CLIP's quick_gelu: x · sigmoid(1.702 x). */
  quickGelu(x: string): string {
    return this.mul(x, this.op("Sigmoid", [this.mul(x, this.scalar(1.702))]));
  }

  layerNorm(x: string, dim: number): string {
    return this.op(
      "LayerNormalization",
      [x, this.filled("ln.weight", [dim], 1), this.filled("ln.bias", [dim], 0)],
      {
        axis: { int: -1 },
        epsilon: { float: 1e-5 },
      },
    );
  }

  /**
   * GroupNorm on [B, C, H, W] the way PyTorch exports it before opset 18 (which has no
   * GroupNormalization): reshape to [B, G, -1], InstanceNormalization, reshape back, affine per channel.
   */
  groupNorm(x: string, channels: number, groups: number): string {
    const grouped = this.op("Reshape", [x, this.ints([0, groups, -1])]);
    const normed = this.op("InstanceNormalization", [
      grouped,
      this.filled("gn.ones", [groups], 1),
      this.filled("gn.zeros", [groups], 0),
    ]);
    const back = this.op("Reshape", [normed, this.op("Shape", [x])]);
    return this.add(
      this.mul(back, this.filled("gn.weight", [channels, 1, 1], 1)),
      this.filled("gn.bias", [channels, 1, 1], 0),
    );
  }

  /**
   * Scaled dot-product attention over [B, S, C] tensors already projected to q/k/v, split into
   * `heads` heads; `mask` is an additive [Sq, Sk] bias (e.g. CLIP's causal mask). Returns [B, Sq, C].
   */
  attention(q: string, k: string, v: string, channels: number, heads: number, mask?: string): string {
    const dh = channels / heads;
    const split = this.ints([0, 0, heads, dh]);
    const qh = this.op("Transpose", [this.op("Reshape", [q, split])], { perm: { ints: [0, 2, 1, 3] } });
    const kt = this.op("Transpose", [this.op("Reshape", [k, split])], { perm: { ints: [0, 2, 3, 1] } });
    const vh = this.op("Transpose", [this.op("Reshape", [v, split])], { perm: { ints: [0, 2, 1, 3] } });
    let scores = this.mul(this.op("MatMul", [qh, kt]), this.scalar(1 / Math.sqrt(dh)));
    if (mask) scores = this.add(scores, mask);
    const ctx = this.op("MatMul", [this.op("Softmax", [scores], { axis: { int: -1 } }), vh]);
    return this.op("Reshape", [
      this.op("Transpose", [ctx], { perm: { ints: [0, 2, 1, 3] } }),
      this.ints([0, 0, channels]),
    ]);
  }

  /** A float graph input; float16 inputs are cast to float32 because CPU fp16 kernels are unreliable. */
  floatInput(name: string, dims: readonly Dim[], io: FloatIo): string {
    this.b.addInput(name, io === "float16" ? DataType.FLOAT16 : DataType.FLOAT, dims);
    return io === "float16" ? this.op("Cast", [name], { to: { int: DataType.FLOAT } }) : name;
  }

  /** Names `x` as graph output `name`, cast to float16 when the I/O is float16. */
  floatOutput(x: string, name: string, dims: readonly Dim[], io: FloatIo): void {
    if (io === "float16") {
      this.b.addNode("Cast", [x], { to: { int: DataType.FLOAT16 } }, [name]);
      this.b.addOutput(name, DataType.FLOAT16, dims);
    } else {
      this.b.addNode("Identity", [x], {}, [name]);
      this.b.addOutput(name, DataType.FLOAT, dims);
    }
  }
}
