// What diffusers' remote_decode / remote_encode put on the wire, request for request
// (diffusers/utils/remote_utils.py: prepare_decode, postprocess_decode, prepare_encode), so the
// tests exercise exactly the query encoding, headers and body a Python client sends.
import { bfloat16ToFloat32, float16ToFloat32 } from "@hybrid/protocol";

export type TorchDType = "float32" | "float16" | "bfloat16";

export interface RemoteDecodeArgs {
  tensor: { data: Uint8Array; shape: number[]; dtype: TorchDType };
  /** Stands for diffusers' `processor` argument: a client holding one asks for a tensor. */
  processor?: boolean;
  do_scaling?: boolean;
  scaling_factor?: number;
  shift_factor?: number;
  output_type?: "pil" | "pt" | "mp4";
  image_format?: "jpg" | "png";
  partial_postprocess?: boolean;
  height?: number;
  width?: number;
}

/** Python `requests` params encoding: lists repeat the key, booleans are True/False. */
export function pythonQuery(params: Record<string, unknown>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    for (const item of Array.isArray(v) ? v : [v])
      q.append(k, typeof item === "boolean" ? (item ? "True" : "False") : String(item));
  }
  return q.toString();
}

/**
 * The two generations of diffusers' client. "accept-headers" (PROTOCOL.md §1) sends
 * `Content-Type: tensor/binary` and picks `Accept` from output_type/image_format/processor;
 * "no-headers" (diffusers main today) sends neither, so `requests` accepts anything.
 */
export type ClientGeneration = "accept-headers" | "no-headers";

export function prepareDecode(
  a: RemoteDecodeArgs,
  generation: ClientGeneration = "accept-headers",
): { query: string; headers: Record<string, string>; body: Uint8Array } {
  const output_type = a.output_type ?? "pil";
  const image_format = a.image_format ?? "jpg";
  // diffusers' default is do_scaling=True (deprecated, but still the default).
  const doScaling = a.do_scaling ?? true;
  const params: Record<string, unknown> = {
    image_format,
    output_type,
    partial_postprocess: a.partial_postprocess ?? false,
    shape: a.tensor.shape,
    dtype: a.tensor.dtype,
  };
  if (generation === "accept-headers") {
    if (doScaling && a.scaling_factor === undefined) params.do_scaling = doScaling;
    else if (a.scaling_factor !== undefined) params.scaling_factor = a.scaling_factor;
    if (a.shift_factor !== undefined) params.shift_factor = a.shift_factor;
  } else {
    if (doScaling && a.scaling_factor !== undefined) params.scaling_factor = a.scaling_factor;
    if (doScaling && a.shift_factor !== undefined) params.shift_factor = a.shift_factor;
    if (doScaling && a.scaling_factor === undefined) params.do_scaling = doScaling;
  }
  if (a.height !== undefined && a.width !== undefined) {
    params.height = a.height;
    params.width = a.width;
  }
  if (generation === "no-headers")
    return { query: pythonQuery(params), headers: { Accept: "*/*" }, body: a.tensor.data };
  let accept = "tensor/binary";
  if (output_type === "pil" && image_format === "jpg" && !a.processor) accept = "image/jpeg";
  else if (output_type === "pil" && image_format === "png" && !a.processor) accept = "image/png";
  else if (output_type === "mp4") accept = "text/plain";
  return {
    query: pythonQuery(params),
    headers: { "Content-Type": "tensor/binary", Accept: accept },
    body: a.tensor.data,
  };
}

export interface DecodedTensor {
  shape: number[];
  dtype: string;
  /** Values as numbers (uint8 as is, floats converted to float32). */
  values: Float32Array | Uint8Array;
}

/** torch.frombuffer(content, dtype=DTYPE_MAP[headers["dtype"]]).reshape(json.loads(headers["shape"])) */
export function readTensor(bytes: Uint8Array, headers: Headers): DecodedTensor {
  const shape = JSON.parse(headers.get("shape") ?? "null") as number[];
  const dtype = headers.get("dtype") ?? "";
  const buf = Uint8Array.from(bytes).buffer;
  const values =
    dtype === "uint8"
      ? new Uint8Array(buf)
      : dtype === "float16"
        ? float16ToFloat32(new Uint16Array(buf))
        : dtype === "bfloat16"
          ? bfloat16ToFloat32(new Uint16Array(buf))
          : dtype === "float32"
            ? new Float32Array(buf)
            : (() => {
                throw new Error(`unknown dtype header ${dtype}`);
              })();
  if (values.length !== shape.reduce((a, b) => a * b, 1))
    throw new Error(`body does not match shape ${shape}`);
  return { shape, dtype, values };
}

export async function remoteDecode(endpoint: string, a: RemoteDecodeArgs, generation?: ClientGeneration) {
  const { query, headers, body } = prepareDecode(a, generation);
  const res = await fetch(`${endpoint}?${query}`, { method: "POST", headers, body });
  return { res, bytes: new Uint8Array(await res.arrayBuffer()) };
}

/** remote_encode with a PIL image: the PNG bytes, no Content-Type, Accept any. */
export async function remoteEncode(
  endpoint: string,
  png: Uint8Array,
  params: { scaling_factor?: number; shift_factor?: number } = {},
) {
  const res = await fetch(`${endpoint}?${pythonQuery(params)}`, {
    method: "POST",
    headers: { Accept: "*/*" },
    body: png,
  });
  return { res, bytes: new Uint8Array(await res.arrayBuffer()) };
}
