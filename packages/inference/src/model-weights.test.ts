import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generatePipelineModel, generateVaeModel } from "@hybrid/model-tools";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sourceWeights } from "./model-weights.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "weights-"));
  await generateVaeModel({ family: "sd-v1", outDir: join(dir, "vae"), withEncoder: true });
  await generatePipelineModel({ kind: "sd-v1", outDir: join(dir, "sd") });
}, 120_000);
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const size = async (...p: string[]) => (await stat(join(dir, ...p))).size;

describe("sourceWeights", () => {
  it("sums the graphs a VAE export loads and the external data beside them, nothing else", async () => {
    // A big export keeps its tensors beside the graph; a README or a second graph is not loaded.
    await writeFile(join(dir, "vae", "vae_decoder", "model.onnx_data"), new Uint8Array(1000));
    await writeFile(join(dir, "vae", "vae_encoder", "weights.pb"), new Uint8Array(300));
    await writeFile(join(dir, "vae", "vae_decoder", "notes.txt"), new Uint8Array(5000));
    await writeFile(join(dir, "vae", "vae_decoder", "model_fp16.onnx"), new Uint8Array(7000));
    const w = await sourceWeights({ id: "v", dir: join(dir, "vae") });
    const expected =
      (await size("vae", "vae_decoder", "model.onnx")) +
      (await size("vae", "vae_encoder", "model.onnx")) +
      1300;
    expect(w.bytes).toBe(expected);
    expect(w.files.map((f) => f.path.slice(dir.length + 1)).sort()).toEqual([
      "vae/vae_decoder/model.onnx",
      "vae/vae_decoder/model.onnx_data",
      "vae/vae_encoder/model.onnx",
      "vae/vae_encoder/weights.pb",
    ]);
  });

  it("counts a pipeline's text encoder and UNet with its VAE", async () => {
    const w = await sourceWeights({ id: "sd", dir: join(dir, "sd") });
    const graphs = ["text_encoder", "unet", "vae_decoder", "vae_encoder"];
    let expected = 0;
    for (const g of graphs) expected += await size("sd", g, "model.onnx");
    expect(w.bytes).toBe(expected);
    expect(w.files).toHaveLength(4);
    // Largest first: the UNet dominates a pipeline.
    expect(w.files[0]!.bytes).toBe(Math.max(...w.files.map((f) => f.bytes)));
  });
});
