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
const layout = (name: string) => PIPELINE_LAYOUTS.find((l) => l.name === name)!;
/** What optimum writes for FLUX.1 (CLIP + T5) and SD3 (two CLIPs with projection + T5). */
const FLUX = [
  "scheduler/scheduler_config.json",
  "tokenizer/vocab.json",
  "tokenizer_2/tokenizer.json",
  "text_encoder/model.onnx",
  "text_encoder_2/model.onnx",
  "transformer/model.onnx",
  "vae_decoder/model.onnx",
];
const SD3_NO_T5 = [
  "scheduler/scheduler_config.json",
  "tokenizer/vocab.json",
  "tokenizer_2/vocab.json",
  "text_encoder/model.onnx",
  "text_encoder_2/model.onnx",
  "transformer/model.onnx",
  "vae_decoder/model.onnx",
];
const SD3 = [...SD3_NO_T5, "tokenizer_3/tokenizer.json", "text_encoder_3/model.onnx"];

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

  it("requires Flux's T5 but not SD3's", () => {
    expect(requiredFiles(layout("flux"))).toEqual(FLUX);
    expect(requiredFiles(layout("sd3"))).toEqual(SD3_NO_T5);
    expect(layout("flux")).toMatchObject({ denoiser: "transformer", patchSize: 2 });
    expect(layout("sd3")).toMatchObject({ denoiser: "transformer", patchSize: 1 });
    expect(layout("sd3").text.map((t) => [t.encoder, t.tokenizerKind, t.optional ?? false])).toEqual([
      ["text_encoder", "clip", false],
      ["text_encoder_2", "clip", false],
      ["text_encoder_3", "t5", true],
    ]);
  });

  it("tells SD, SDXL, SD3 and Flux apart", () => {
    const name = (files: string[]) => {
      const m = matchLayout(has(files));
      return m.kind === "pipeline" ? m.layout.name : m.kind;
    };
    expect(name(SD)).toBe("sd");
    expect(name([...SD, "text_encoder_2/model.onnx"])).toBe("sdxl");
    expect(name(FLUX)).toBe("flux");
    expect(name(SD3)).toBe("sd3");
    expect(name(SD3_NO_T5)).toBe("sd3");
    // A transformer is not a UNet: SD3's files with a unet instead are SDXL's, not SD3's.
    expect(name(SD3_NO_T5.map((f) => f.replace("transformer/", "unet/")))).toBe("sdxl");
    // SD3's CLIP tokenizer_2 next to Flux's T5 one: still SD3 (the first complete layout wins).
    expect(name([...FLUX, "tokenizer_2/vocab.json"])).toBe("sd3");
    // Flux without its T5 is incomplete, not SD3 and not a VAE.
    expect(matchLayout(has(FLUX.filter((f) => !f.startsWith("text_encoder_2/"))))).toMatchObject({
      kind: "none",
      closest: { name: "flux" },
      missing: ["text_encoder_2/model.onnx"],
    });
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
    for (const p of [
      ...SD,
      ...FLUX,
      ...SD3,
      "model_index.json",
      "unet/weights.pb",
      "text_encoder_2/model.onnx_data",
      "transformer/model.onnx_data",
      "transformer/config.json",
      "text_encoder_3/model.onnx_data",
      "text_encoder_3/config.json",
      "tokenizer_2/spiece.model",
      "tokenizer_2/merges.txt",
      "tokenizer_3/tokenizer_config.json",
      "tokenizer_3/special_tokens_map.json",
      "tokenizer_3/spiece.model",
    ])
      expect(isLayoutFile(p), p).toBe(true);
    for (const p of [
      "unet/diffusion_pytorch_model.safetensors",
      "vae/config.json",
      "README.md",
      "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
      "text_encoder_3/model.safetensors",
      "tokenizer_3/vocab.json",
    ])
      expect(isLayoutFile(p), p).toBe(false);
    expect(LAYOUT_DIRS).toEqual(
      expect.arrayContaining([
        "",
        "scheduler",
        "tokenizer",
        "tokenizer_2",
        "tokenizer_3",
        "unet",
        "transformer",
        "text_encoder_3",
      ]),
    );
    const order = ["model_index.json", "vae_decoder/model.onnx", "unet/model.onnx"].sort(
      (a, b) => downloadRank(a) - downloadRank(b),
    );
    expect(order).toEqual(["unet/model.onnx", "vae_decoder/model.onnx", "model_index.json"]);
  });
});
