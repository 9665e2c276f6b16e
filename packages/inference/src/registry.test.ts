import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateVaeModel } from "./generator/index.ts";
import { familyFromClassNames, resolveModelDir } from "./registry.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "registry-"));
  await generateVaeModel({ family: "sdxl", outDir: join(dir, "sdxl") });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("resolveModelDir", () => {
  it("reads optimum's layout: graphs, VAE config and the pipeline's family", async () => {
    const files = await resolveModelDir({ id: "x", dir: join(dir, "sdxl") });
    expect(files.family).toBe("sdxl");
    expect(files.decoderPath).toBe(join(dir, "sdxl", "vae_decoder", "model.onnx"));
    expect(files.encoderPath).toBe(join(dir, "sdxl", "vae_encoder", "model.onnx"));
    expect(files.config).toMatchObject({ scaling_factor: 0.13025, latent_channels: 4 });
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
    const files = await resolveModelDir({ id: "bare", dir: bare });
    expect(files).toMatchObject({ family: "flux", encoderPath: null, config: { shift_factor: 0.1159 } });
    expect((await resolveModelDir({ id: "bare", dir: bare, family: "sd-v1" })).family).toBe("sd-v1");
  });

  it("refuses a directory without a decoder, naming the expected path", async () => {
    await expect(resolveModelDir({ id: "none", dir: join(dir, "nothing") })).rejects.toThrow(
      /vae_decoder\/model\.onnx not found/,
    );
  });

  it("names families from diffusers class names", () => {
    expect(familyFromClassNames(["StableDiffusionXLPipeline"])).toBe("sdxl");
    expect(familyFromClassNames(["FluxPipeline", "AutoencoderKL"])).toBe("flux");
    expect(familyFromClassNames([undefined, "AutoencoderKLHunyuanVideo"])).toBe("hunyuan-video");
    expect(familyFromClassNames(["StableDiffusionPipeline"])).toBe("sd-v1");
  });
});
