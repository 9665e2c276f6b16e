// The decode the overhead and throughput benches send, and its in-process baseline: 1x4x64x64
// float32 latents for a uint8 [1,512,512,3] answer (`output_type=pt&partial_postprocess=True`),
// for the tiny generated VAE (queue overhead dominates) and a TAESD-size one (realistic compute).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { generateVaeModel } from "@hybrid/model-tools";
import { encodeFromFloat32 } from "@hybrid/protocol";
import * as ort from "onnxruntime-node";
import { pythonQuery } from "../e2e/diffusers-client.ts";
import { TEST_MODELS_DIR } from "../e2e/stack.ts";

export const BENCH_VAES = [
  { id: "bench-tiny", arch: "tiny" },
  { id: "bench-taesd", arch: "taesd" },
] as const;

const decoderPath = (id: string) => join(TEST_MODELS_DIR, id, "vae_decoder", "model.onnx");

/** Writes the bench models once per checkout (node_modules/.cache, like the test models). */
export async function ensureBenchVaes(): Promise<void> {
  for (const m of BENCH_VAES)
    if (!existsSync(decoderPath(m.id)))
      await generateVaeModel({
        family: "sd-v1",
        outDir: join(TEST_MODELS_DIR, m.id),
        arch: m.arch,
        withEncoder: false,
      });
}

/** `MODELS` for a stack that serves the bench models. */
export const benchVaesEnv = () => BENCH_VAES.map((m) => `${m.id}=${join(TEST_MODELS_DIR, m.id)}`).join(",");

const shape = [1, 4, 64, 64];
const values = Float32Array.from({ length: 4 * 64 * 64 }, (_, i) => Math.sin(i * 0.37) * 2);
/** The request body (`Content-Type: tensor/binary`) and query of the decode. */
export const DECODE_BODY = encodeFromFloat32(values, "float32");
export const DECODE_QUERY = pythonQuery({
  output_type: "pt",
  partial_postprocess: true,
  shape,
  dtype: "float32",
});
export const ANSWER_BYTES = 512 * 512 * 3;

/** The in-process baseline: a bare session with ORT's own defaults, as anyone would run the model. */
export async function bareSession(
  id: string,
  /** The worker's provider for this model (see bench-utils' `inProcessProviders`). @defaultValue ["cpu"] */
  executionProviders: string[] = ["cpu"],
): Promise<{ run: () => Promise<unknown>; release: () => Promise<void> }> {
  const session = await ort.InferenceSession.create(decoderPath(id), {
    executionProviders,
    graphOptimizationLevel: "all",
  });
  const feeds = { latent_sample: new ort.Tensor("float32", values, shape) };
  return { run: () => session.run(feeds), release: () => session.release() };
}
