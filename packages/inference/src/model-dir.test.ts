import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generatePipelineModel, generateVaeModel } from "@hybrid/model-tools";
import { COMPONENTS, SCHEDULER_CONFIG } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectModelDir, familyFromClassNames, isModelDir, type PipelineDir } from "./model-dir.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "model-dir-"));
  await generateVaeModel({ family: "sdxl", outDir: join(dir, "sdxl") });
  await generateVaeModel({ family: "hunyuan-video", outDir: join(dir, "video") });
  await generatePipelineModel({ kind: "sd-v1", outDir: join(dir, "sd") });
  await generatePipelineModel({ kind: "sdxl", outDir: join(dir, "sdxl-pipe"), ioDtype: "float16" });
  await generatePipelineModel({ kind: "lcm", outDir: join(dir, "lcm") });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function pipeline(name: string): Promise<PipelineDir> {
  const found = await detectModelDir(join(dir, name));
  if (found.kind !== "pipeline") throw new Error(`${name}: detected as ${found.kind}`);
  return found;
}

describe("detectModelDir", () => {
  it("reads a VAE export: graphs, VAE config, family and geometry", async () => {
    const found = await detectModelDir(join(dir, "sdxl"));
    expect(found).toMatchObject({
      kind: "vae",
      family: "sdxl",
      vaeDecoder: join(dir, "sdxl", "vae_decoder", "model.onnx"),
      vaeEncoder: join(dir, "sdxl", "vae_encoder", "model.onnx"),
      vaeConfig: { scaling_factor: 0.13025, latent_channels: 4 },
      geometry: {
        latentChannels: 4,
        spatialFactor: 8,
        temporalFactor: null,
        patchSize: 1,
        scalingFactor: 0.13025,
        shiftFactor: null,
      },
      requiredFiles: ["vae_decoder/model.onnx"],
    });
  });

  it("reads a video VAE's temporal factor and a VAE without an encoder", async () => {
    const found = await detectModelDir(join(dir, "video"));
    expect(found).toMatchObject({ kind: "vae", family: "hunyuan-video", vaeEncoder: null });
    expect(found.geometry).toMatchObject({ latentChannels: 16, spatialFactor: 8, temporalFactor: 4 });
  });

  it("serves a bare export (decoder + root config.json, no model_index.json), family from its config", async () => {
    const bare = join(dir, "bare");
    await mkdir(join(bare, "vae_decoder"), { recursive: true });
    await copyFile(join(dir, "sdxl", "vae_decoder", "model.onnx"), join(bare, "vae_decoder", "model.onnx"));
    await writeFile(
      join(bare, "config.json"),
      JSON.stringify({
        _class_name: "AutoencoderKL",
        latent_channels: 16,
        scaling_factor: 0.3611,
        shift_factor: 0.1159,
      }),
    );
    const found = await detectModelDir(bare);
    expect(found).toMatchObject({ kind: "vae", family: "flux", vaeEncoder: null });
    expect(found.geometry).toMatchObject({ latentChannels: 16, scalingFactor: 0.3611, shiftFactor: 0.1159 });
    expect((await detectModelDir(bare, { family: "sd-v1" })).family).toBe("sd-v1");
  });

  it("reads each pipeline family the generator makes", async () => {
    const sd = await pipeline("sd");
    expect(sd).toMatchObject({
      family: "sd-v1",
      layout: { name: "sd", denoiser: "unet" },
      tokenizers: [join(dir, "sd", "tokenizer")],
      textEncoders: [join(dir, "sd", "text_encoder", "model.onnx")],
      denoiser: join(dir, "sd", "unet", "model.onnx"),
      vaeEncoder: join(dir, "sd", "vae_encoder", "model.onnx"),
      scheduler: { _class_name: "PNDMScheduler" },
      timeCondProjDim: null,
      forceZerosForEmptyPrompt: false,
      geometry: {
        latentChannels: 4,
        spatialFactor: 8,
        patchSize: 1,
        scalingFactor: 0.18215,
        shiftFactor: null,
      },
    });
    expect(sd.requiredFiles).toContain(COMPONENTS.unet.graph);

    const sdxl = await pipeline("sdxl-pipe");
    expect(sdxl).toMatchObject({ family: "sdxl", layout: { name: "sdxl" }, forceZerosForEmptyPrompt: true });
    expect(sdxl.textEncoders).toEqual([
      join(dir, "sdxl-pipe", "text_encoder", "model.onnx"),
      join(dir, "sdxl-pipe", "text_encoder_2", "model.onnx"),
    ]);
    expect(sdxl.tokenizers).toEqual([
      join(dir, "sdxl-pipe", "tokenizer"),
      join(dir, "sdxl-pipe", "tokenizer_2"),
    ]);
    expect(sdxl.geometry.scalingFactor).toBe(0.13025);

    const lcm = await pipeline("lcm");
    expect(lcm).toMatchObject({
      family: "sd-v1",
      layout: { name: "sd" },
      scheduler: { _class_name: "LCMScheduler" },
    });
    expect(lcm.timeCondProjDim).toBeGreaterThan(0);
  });

  it("reads configs with Python's Infinity and NaN", async () => {
    const copy = join(dir, "sd-inf");
    await generatePipelineModel({ kind: "sd-v1", outDir: copy });
    const path = join(copy, SCHEDULER_CONFIG);
    const text = (await readFile(path, "utf8")).replace(
      /\n}\s*$/,
      ',\n  "lambda_min_clipped": -Infinity\n}\n',
    );
    await writeFile(path, text);
    const vaePath = join(copy, COMPONENTS.vae_decoder.config);
    const vae = (await readFile(vaePath, "utf8")).replace(/\n}\s*$/, ',\n  "force_upcast": NaN\n}\n');
    await writeFile(vaePath, vae);
    const found = await pipeline("sd-inf");
    expect(found.scheduler.lambda_min_clipped).toBe(Number.NEGATIVE_INFINITY);
    expect(found.vaeConfig.force_upcast).toBeNaN();
  });

  it("refuses a directory that is neither, naming the expected files", async () => {
    await mkdir(join(dir, "nothing"), { recursive: true });
    await writeFile(join(dir, "nothing", "README.md"), "hi");
    await expect(detectModelDir(join(dir, "nothing"))).rejects.toThrow(
      /neither a VAE nor a diffusion pipeline: vae_decoder\/model\.onnx not found/,
    );
    expect(await isModelDir(join(dir, "nothing"))).toBe(false);
    expect(await isModelDir(join(dir, "sd"))).toBe(true);
  });

  it("refuses an incomplete pipeline instead of serving it as a VAE", async () => {
    const broken = join(dir, "broken");
    await mkdir(join(broken, "unet"), { recursive: true });
    await mkdir(join(broken, "vae_decoder"), { recursive: true });
    await copyFile(join(dir, "sd", "unet", "model.onnx"), join(broken, "unet", "model.onnx"));
    await copyFile(join(dir, "sd", "vae_decoder", "model.onnx"), join(broken, "vae_decoder", "model.onnx"));
    await expect(detectModelDir(broken)).rejects.toThrow(
      /incomplete sd pipeline: scheduler\/scheduler_config\.json, tokenizer\/vocab\.json, text_encoder\/model\.onnx not found/,
    );
  });

  it("names families from diffusers class names", () => {
    expect(familyFromClassNames(["StableDiffusionXLPipeline"])).toBe("sdxl");
    expect(familyFromClassNames(["FluxPipeline", "AutoencoderKL"])).toBe("flux");
    expect(familyFromClassNames([undefined, "AutoencoderKLHunyuanVideo"])).toBe("hunyuan-video");
    expect(familyFromClassNames(["StableDiffusionPipeline"])).toBe("sd-v1");
  });
});
