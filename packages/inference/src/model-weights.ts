import { readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { detectModelDir, type ModelDir, type ModelSource } from "./model-dir.ts";

/** A file whose bytes a loaded session holds in memory. */
export interface WeightFile {
  path: string;
  bytes: number;
}

/** What a model's weights weigh once its sessions are loaded. */
export interface ModelWeights {
  dir: string;
  /**
   * A pipeline's sessions live in one session thread; a VAE-only model's are loaded by each
   * thread that runs it (see SessionHost), so it may be held once per thread.
   */
  kind: ModelDir["kind"];
  /** Every graph and external-data file counted, largest first. */
  files: WeightFile[];
  bytes: number;
}

/** The graphs a worker loads for a model: its VAE's, and a pipeline's text encoders and denoiser. */
export function modelGraphs(files: ModelDir): string[] {
  return [
    ...(files.kind === "pipeline" ? [...files.textEncoders, files.denoiser] : []),
    files.vaeDecoder,
    ...(files.vaeEncoder ? [files.vaeEncoder] : []),
  ];
}

// Tensors above 2 GB cannot live inside an ONNX protobuf, so large exports keep them beside the
// graph: optimum writes `model.onnx_data`, other exporters `model.onnx.data`, and diffusers'
// old conversion script `weights.pb`. Files of any other name are not counted.
const isExternalData = (name: string) =>
  name.endsWith(".onnx_data") || name.endsWith(".onnx.data") || name === "weights.pb";

/**
 * Sums the bytes of the weight files of the graphs a worker loads for `files`: each graph and
 * the external-data files in its folder. An estimate of the memory its sessions hold (onnxruntime
 * adds workspace per run on top), read from the file sizes without loading anything.
 */
export async function modelWeights(files: ModelDir): Promise<ModelWeights> {
  const counted = new Map<string, number>();
  for (const graph of modelGraphs(files)) {
    counted.set(graph, (await stat(graph)).size);
    const folder = dirname(graph);
    for (const name of await readdir(folder)) {
      const path = join(folder, name);
      if (counted.has(path) || !isExternalData(name)) continue;
      const s = await stat(path);
      if (s.isFile()) counted.set(path, s.size);
    }
  }
  const list = [...counted].map(([path, bytes]) => ({ path, bytes })).sort((a, b) => b.bytes - a.bytes);
  return { dir: files.dir, kind: files.kind, files: list, bytes: list.reduce((n, f) => n + f.bytes, 0) };
}

/** {@link modelWeights} of a model to serve, read from its directory. */
export async function sourceWeights(src: ModelSource): Promise<ModelWeights> {
  return modelWeights(await detectModelDir(src.dir, src.family ? { family: src.family } : {}));
}
