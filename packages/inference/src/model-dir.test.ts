import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
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
  await generatePipelineModel({ kind: "flux-schnell", outDir: join(dir, "flux-schnell") });
  await generatePipelineModel({ kind: "flux-dev", outDir: join(dir, "flux-dev") });
  await generatePipelineModel({ kind: "sd3", outDir: join(dir, "sd3") });
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
    await writeFile(
      join(bare, "config.json"),
      JSON.stringify({
        _class_name: "AutoencoderKL",
        latent_channels: 16,
        scaling_factor: 1.5305,
        shift_factor: 0.0609,
      }),
    );
    const sd3 = await detectModelDir(bare);
    expect(sd3).toMatchObject({ kind: "vae", family: "sd3" });
    expect(sd3.geometry).toMatchObject({
      latentChannels: 16,
      patchSize: 1,
      scalingFactor: 1.5305,
      shiftFactor: 0.0609,
    });
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

  it("reads Flux (schnell, dev): CLIP + T5, the transformer's config, packed 16-channel latents", async () => {
    for (const [name, guidance] of [
      ["flux-schnell", false],
      ["flux-dev", true],
    ] as const) {
      const root = join(dir, name);
      const flux = await pipeline(name);
      expect(flux).toMatchObject({
        family: "flux",
        layout: { name: "flux", denoiser: "transformer", patchSize: 2 },
        text: [
          {
            component: "text_encoder",
            graph: join(root, "text_encoder", "model.onnx"),
            tokenizer: join(root, "tokenizer"),
            tokenizerKind: "clip",
          },
          {
            component: "text_encoder_2",
            graph: join(root, "text_encoder_2", "model.onnx"),
            tokenizer: join(root, "tokenizer_2"),
            tokenizerKind: "t5",
          },
        ],
        missingText: [],
        tokenizers: [join(root, "tokenizer"), join(root, "tokenizer_2")],
        textEncoders: [join(root, "text_encoder", "model.onnx"), join(root, "text_encoder_2", "model.onnx")],
        denoiser: join(root, "transformer", "model.onnx"),
        transformer: {
          _class_name: "FluxTransformer2DModel",
          in_channels: 64,
          patch_size: 1,
          guidance_embeds: guidance,
          joint_attention_dim: 96,
          pooled_projection_dim: 32,
        },
        scheduler: { _class_name: "FlowMatchEulerDiscreteScheduler", use_dynamic_shifting: guidance },
        timeCondProjDim: null,
        geometry: {
          latentChannels: 16,
          spatialFactor: 8,
          temporalFactor: null,
          patchSize: 2,
          scalingFactor: 0.3611,
          shiftFactor: 0.1159,
        },
      });
      expect(flux.requiredFiles).toContain("tokenizer_2/tokenizer.json");
    }
  });

  it("reads SD3: two CLIPs + T5, the transformer's config, 16-channel latents patchified inside", async () => {
    const root = join(dir, "sd3");
    const sd3 = await pipeline("sd3");
    expect(sd3).toMatchObject({
      family: "sd3",
      layout: { name: "sd3", denoiser: "transformer", patchSize: 1 },
      missingText: [],
      tokenizers: ["tokenizer", "tokenizer_2", "tokenizer_3"].map((t) => join(root, t)),
      textEncoders: ["text_encoder", "text_encoder_2", "text_encoder_3"].map((t) =>
        join(root, t, "model.onnx"),
      ),
      transformer: {
        _class_name: "SD3Transformer2DModel",
        in_channels: 16,
        patch_size: 2,
        guidance_embeds: false,
        joint_attention_dim: 96,
        pooled_projection_dim: 80,
      },
      sampleSize: 32,
      scheduler: { _class_name: "FlowMatchEulerDiscreteScheduler", shift: 3 },
      geometry: {
        latentChannels: 16,
        spatialFactor: 8,
        patchSize: 1,
        scalingFactor: 1.5305,
        shiftFactor: 0.0609,
      },
    });
    expect(sd3.text.map((t) => t.tokenizerKind)).toEqual(["clip", "clip", "t5"]);
    // text_encoder_3 is optional: SD3 is complete without it.
    expect(sd3.requiredFiles).not.toContain("text_encoder_3/model.onnx");
  });

  it("serves SD3 without its T5, and refuses half a T5", async () => {
    const noT5 = join(dir, "sd3-no-t5");
    await cp(join(dir, "sd3"), noT5, { recursive: true });
    await rm(join(noT5, "text_encoder_3"), { recursive: true });
    await rm(join(noT5, "tokenizer_3"), { recursive: true });
    const found = await pipeline("sd3-no-t5");
    expect(found).toMatchObject({ family: "sd3", layout: { name: "sd3" }, missingText: ["text_encoder_3"] });
    expect(found.text.map((t) => t.component)).toEqual(["text_encoder", "text_encoder_2"]);
    expect(found.textEncoders).toHaveLength(2);

    await mkdir(join(noT5, "text_encoder_3"));
    await copyFile(
      join(dir, "sd3", "text_encoder_3", "model.onnx"),
      join(noT5, "text_encoder_3", "model.onnx"),
    );
    await expect(detectModelDir(noT5)).rejects.toThrow(
      /only part of the optional text_encoder_3: tokenizer_3\/tokenizer\.json not found/,
    );
  });

  it("refuses a Flux directory whose transformer config lacks what the pipeline needs", async () => {
    const bad = join(dir, "flux-bad");
    await cp(join(dir, "flux-schnell"), bad, { recursive: true });
    await writeFile(
      join(bad, "transformer", "config.json"),
      JSON.stringify({ _class_name: "FluxTransformer2DModel" }),
    );
    await expect(detectModelDir(bad)).rejects.toThrow(/not a diffusers transformer config: in_channels/);
  });

  it("names an incomplete Flux pipeline after its transformer, not as an SD one", async () => {
    const broken = join(dir, "flux-no-t5");
    await cp(join(dir, "flux-schnell"), broken, { recursive: true });
    await rm(join(broken, "text_encoder_2"), { recursive: true });
    await expect(detectModelDir(broken)).rejects.toThrow(
      /incomplete flux pipeline: text_encoder_2\/model\.onnx not found/,
    );
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
    expect(familyFromClassNames(["StableDiffusion3Pipeline", "AutoencoderKL"])).toBe("sd3");
    // A bare 16-channel AutoencoderKL: SD3's by its scaling factor, Flux's otherwise.
    expect(familyFromClassNames([undefined, "AutoencoderKL"], 16, 1.5305)).toBe("sd3");
    expect(familyFromClassNames([undefined, "AutoencoderKL"], 16, 0.3611)).toBe("flux");
  });
});
