import type { onnx as OnnxTypes } from "onnx-proto";
import onnxProto from "onnx-proto";

// onnx-proto is CommonJS that assigns `module.exports = $root`, which Node's ESM loader cannot
// see named exports through, so the namespace has to come off the default import.
const { onnx } = onnxProto;

export const OPSET_VERSION = 17;
export const IR_VERSION = 8;

/** The ONNX TensorProto.DataType codes this generator needs. */
export const DataType = {
  FLOAT: 1,
  INT64: 7,
  FLOAT16: 10,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** A dimension is a fixed size or a symbolic name (dim_param) that stays dynamic at run time. */
export type Dim = number | string;

/**
 * Attribute values are tagged explicitly: ONNX distinguishes INT from FLOAT, and a bare JS number
 * such as `1` could be either.
 */
export type AttrValue =
  | { int: number }
  | { float: number }
  | { ints: readonly number[] }
  | { floats: readonly number[] }
  | { string: string };

const AttrType = onnx.AttributeProto.AttributeType;

function toAttribute(name: string, value: AttrValue): OnnxTypes.IAttributeProto {
  if ("int" in value) return { name, type: AttrType.INT, i: value.int };
  if ("float" in value) return { name, type: AttrType.FLOAT, f: value.float };
  if ("ints" in value) return { name, type: AttrType.INTS, ints: [...value.ints] };
  if ("floats" in value) return { name, type: AttrType.FLOATS, floats: [...value.floats] };
  return { name, type: AttrType.STRING, s: new TextEncoder().encode(value.string) };
}

function valueInfo(name: string, elemType: DataTypeCode, dims: readonly Dim[]): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/**
 * raw_data is specified as little-endian regardless of host, so it is written through a DataView
 * rather than by reinterpreting the typed array's buffer.
 */
function float32Bytes(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
  return out;
}

function int64Bytes(data: readonly bigint[]): Uint8Array {
  const out = new Uint8Array(data.length * 8);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setBigInt64(i * 8, data[i]!, true);
  return out;
}

/** Builds one ONNX graph (a single-function model) and serialises it as a ModelProto. */
export class OnnxGraphBuilder {
  private readonly nodes: OnnxTypes.INodeProto[] = [];
  private readonly initializers: OnnxTypes.ITensorProto[] = [];
  private readonly inputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly outputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly counters = new Map<string, number>();

  constructor(private readonly graphName: string) {}

  /** A fresh tensor/node name; names only have to be unique, but readable ones help in Netron. */
  uniqueName(prefix: string): string {
    const n = this.counters.get(prefix) ?? 0;
    this.counters.set(prefix, n + 1);
    return `${prefix}_${n}`;
  }

  addInput(name: string, elemType: DataTypeCode, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  addOutput(name: string, elemType: DataTypeCode, dims: readonly Dim[]): string {
    this.outputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  addFloatInitializer(name: string, data: Float32Array, dims: readonly number[]): string {
    checkSize(name, data.length, dims);
    this.initializers.push({ name, dataType: DataType.FLOAT, dims: [...dims], rawData: float32Bytes(data) });
    return name;
  }

  addInt64Initializer(name: string, data: readonly bigint[], dims: readonly number[]): string {
    checkSize(name, data.length, dims);
    this.initializers.push({ name, dataType: DataType.INT64, dims: [...dims], rawData: int64Bytes(data) });
    return name;
  }

  /**
   * Appends a node; `outputs` defaults to one fresh name. Returns the output names. An empty string
   * in `inputs` marks an omitted optional input, as ONNX specifies.
   */
  addNode(
    opType: string,
    inputs: readonly string[],
    attrs: Readonly<Record<string, AttrValue>> = {},
    outputs?: readonly string[],
  ): string[] {
    const outs = outputs ? [...outputs] : [this.uniqueName(opType.toLowerCase())];
    this.nodes.push({
      name: this.uniqueName(`${opType}_node`),
      opType,
      input: [...inputs],
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => toAttribute(k, v)),
    });
    return outs;
  }

  /** Convenience for the common single-output node. */
  op(opType: string, inputs: readonly string[], attrs: Readonly<Record<string, AttrValue>> = {}): string {
    return this.addNode(opType, inputs, attrs)[0]!;
  }

  toModelProto(): OnnxTypes.IModelProto {
    return {
      irVersion: IR_VERSION,
      opsetImport: [{ domain: "", version: OPSET_VERSION }],
      producerName: "hybrid-inference",
      producerVersion: "0.1.0",
      graph: {
        name: this.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
  }

  toBytes(): Uint8Array {
    return onnx.ModelProto.encode(this.toModelProto()).finish();
  }
}

function checkSize(name: string, length: number, dims: readonly number[]): void {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (expected !== length) {
    throw new Error(`initializer ${name}: ${length} values do not fill dims [${dims.join(", ")}]`);
  }
}
