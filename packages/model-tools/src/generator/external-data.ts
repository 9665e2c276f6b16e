import { readFile, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

/**
 * Rewrites the ONNX graph at `path` the way exporters store weights past protobuf's 2 GB limit
 * (optimum's Flux and SD3 transformers, T5-XXL): every initializer of 1 KiB or more moves to one file
 * beside it (`<path>_data`, e.g. `model.onnx_data`), each tensor naming that file, its offset and
 * length, and the graph keeps only the references. onnxruntime reads the file from the graph's
 * folder. Returns the external file's path.
 */
export async function moveWeightsToExternalData(path: string): Promise<string> {
  const model = onnx.ModelProto.decode(await readFile(path));
  const dataPath = `${path}_data`;
  const location = basename(dataPath);
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of model.graph?.initializer ?? []) {
    const raw = tensor.rawData;
    // Small tensors stay inline, as onnx's save_as_external_data keeps them (size_threshold 1 KiB):
    // shape inference reads constants such as Reshape's target shape from the graph itself.
    if (!raw || raw.length < 1024) continue;
    // Exporters align each tensor (onnx's save_as_external_data uses 4096 on request; any works).
    const pad = (64 - (offset % 64)) % 64;
    if (pad > 0) parts.push(new Uint8Array(pad));
    offset += pad;
    parts.push(raw);
    tensor.externalData = [
      { key: "location", value: location },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(raw.length) },
    ];
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    tensor.rawData = new Uint8Array(0);
    offset += raw.length;
  }
  await writeFile(dataPath, Buffer.concat(parts));
  await writeFile(path, onnx.ModelProto.encode(model).finish());
  return dataPath;
}
