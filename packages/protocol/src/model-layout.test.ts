import { describe, expect, it } from "vitest";
import {
  COMPONENTS,
  downloadRank,
  isLayoutFile,
  LAYOUT_DIRS,
  matchLayout,
  PIPELINE_LAYOUTS,
  requiredFiles,
} from "./model-layout.ts";

const SD = [
  "scheduler/scheduler_config.json",
  "tokenizer/vocab.json",
  "text_encoder/model.onnx",
  "unet/model.onnx",
  "vae_decoder/model.onnx",
];
const has = (files: string[]) => (p: string) => files.includes(p);

describe("model layouts", () => {
  it("lists what each pipeline layout requires, in reading order", () => {
    const sd = PIPELINE_LAYOUTS.find((l) => l.name === "sd")!;
    const sdxl = PIPELINE_LAYOUTS.find((l) => l.name === "sdxl")!;
    expect(requiredFiles(sd)).toEqual(SD);
    // tokenizer_2/ may be missing: SDXL then reuses the first tokenizer.
    expect(requiredFiles(sdxl)).toEqual([
      "scheduler/scheduler_config.json",
      "tokenizer/vocab.json",
      "text_encoder/model.onnx",
      "text_encoder_2/model.onnx",
      "unet/model.onnx",
      "vae_decoder/model.onnx",
    ]);
  });

  it("matches the most specific complete layout, a VAE, or names what is missing", () => {
    expect(matchLayout(has(SD))).toMatchObject({ kind: "pipeline", layout: { name: "sd" } });
    expect(matchLayout(has([...SD, COMPONENTS.text_encoder_2.graph]))).toMatchObject({
      kind: "pipeline",
      layout: { name: "sdxl" },
    });
    expect(matchLayout(has(["vae_decoder/model.onnx", "vae_encoder/model.onnx"]))).toMatchObject({
      kind: "vae",
    });
    // A denoiser without its text encoder is a broken pipeline, not a VAE.
    expect(matchLayout(has(["unet/model.onnx", "vae_decoder/model.onnx"]))).toEqual({
      kind: "none",
      closest: expect.objectContaining({ name: "sd" }),
      missing: ["scheduler/scheduler_config.json", "tokenizer/vocab.json", "text_encoder/model.onnx"],
    });
    expect(matchLayout(has([]))).toMatchObject({ kind: "none", missing: SD });
  });

  it("knows the layout's files, folders and download order", () => {
    for (const p of [...SD, "model_index.json", "unet/weights.pb", "text_encoder_2/model.onnx_data"])
      expect(isLayoutFile(p), p).toBe(true);
    for (const p of ["unet/diffusion_pytorch_model.safetensors", "vae/config.json", "README.md"])
      expect(isLayoutFile(p), p).toBe(false);
    expect(LAYOUT_DIRS).toEqual(
      expect.arrayContaining(["", "scheduler", "tokenizer", "tokenizer_2", "unet"]),
    );
    const order = ["model_index.json", "vae_decoder/model.onnx", "unet/model.onnx"].sort(
      (a, b) => downloadRank(a) - downloadRank(b),
    );
    expect(order).toEqual(["unet/model.onnx", "vae_decoder/model.onnx", "model_index.json"]);
  });
});
