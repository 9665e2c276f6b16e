import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sourceWeights } from "@hybrid/inference";
import { generatePipelineModel, generateVaeModel } from "@hybrid/model-tools";
import { VAE_REQUIRED } from "@hybrid/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Env } from "./env.ts";
import { discoverModels, modelSizes, modelSources } from "./models.ts";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "models-dir-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A directory the worker takes for a model: what isModelDir looks for (a VAE decoder graph). */
async function modelAt(...parts: string[]): Promise<string> {
  const dir = join(root, ...parts);
  for (const f of VAE_REQUIRED) {
    await mkdir(join(dir, f, ".."), { recursive: true });
    await writeFile(join(dir, f), "");
  }
  return dir;
}

describe("discoverModels", () => {
  it("serves flat model directories by name and owner/name ones by Hub-style id", async () => {
    const flat = await modelAt("sd-tiny");
    const schnell = await modelAt("black-forest-labs", "FLUX.1-schnell");
    const dev = await modelAt("black-forest-labs", "FLUX.1-dev");
    const sd3 = await modelAt("stabilityai", "stable-diffusion-3.5-medium");
    // Neither a model nor an owner of one: a half-pulled directory, a stray file, an empty folder.
    await mkdir(join(root, "half-pulled", "unet"), { recursive: true });
    await writeFile(join(root, "half-pulled", "unet", "model.onnx"), "");
    await writeFile(join(root, "notes.txt"), "");
    await mkdir(join(root, "empty"));
    expect(await discoverModels(root)).toEqual([
      { id: "black-forest-labs/FLUX.1-dev", dir: dev },
      { id: "black-forest-labs/FLUX.1-schnell", dir: schnell },
      { id: "sd-tiny", dir: flat },
      { id: "stabilityai/stable-diffusion-3.5-medium", dir: sd3 },
    ]);
  });

  it("does not look inside a model, nor two levels down", async () => {
    const outer = await modelAt("sd-tiny");
    await modelAt("sd-tiny", "nested");
    await modelAt("a", "b", "c");
    expect(await discoverModels(root)).toEqual([{ id: "sd-tiny", dir: outer }]);
  });

  it("skips a directory whose name no route could call", async () => {
    await modelAt("bad name");
    await modelAt("owner", "bad--name");
    await modelAt(".hidden", "model");
    const ok = await modelAt("owner", "good");
    expect(await discoverModels(root)).toEqual([{ id: "owner/good", dir: ok }]);
  });

  it("follows a symlinked model directory, as before", async () => {
    const real = await modelAt("store", "x");
    await symlink(real, join(root, "linked"));
    await mkdir(join(root, "org"));
    await symlink(real, join(root, "org", "linked"));
    expect((await discoverModels(root)).map((s) => s.id)).toEqual(["linked", "org/linked", "store/x"]);
  });

  it("is empty for a MODELS_DIR that does not exist", async () => {
    expect(await discoverModels(join(root, "missing"))).toEqual([]);
  });
});

describe("modelSources with MODELS", () => {
  it("takes owner/name as <MODELS_DIR>/owner/name and owner/name=/dir as given", async () => {
    const env = Env.parse({
      MODELS_DIR: root,
      MODELS: "acme/tiny,black-forest-labs/FLUX.1-schnell=/opt/flux,sd-tiny",
      GENERATE_DEFAULT_MODELS: "false",
    });
    const log = { info: () => {}, warn: () => {} } as never;
    expect(await modelSources(env, log)).toEqual([
      { id: "acme/tiny", dir: join(root, "acme", "tiny") },
      { id: "black-forest-labs/FLUX.1-schnell", dir: "/opt/flux" },
      { id: "sd-tiny", dir: join(root, "sd-tiny") },
    ]);
  });
});

describe("modelSizes", () => {
  it("counts a pipeline once and a VAE-only model once per session thread, ids of one directory together", async () => {
    const vae = join(root, "vae");
    const sd = join(root, "sd");
    await generateVaeModel({ family: "sd-v1", outDir: vae });
    await generatePipelineModel({ kind: "sd-v1", outDir: sd });
    const vaeBytes = (await sourceWeights({ id: "v", dir: vae })).bytes;
    const sdBytes = (await sourceWeights({ id: "s", dir: sd })).bytes;
    const sources = [
      { id: "v", dir: vae },
      { id: "acme/v", dir: vae },
      { id: "sd", dir: sd },
    ];
    expect(await modelSizes(sources)).toEqual([
      { id: "v+acme/v", bytes: vaeBytes },
      { id: "sd", bytes: sdBytes },
    ]);
    expect(await modelSizes(sources, 3)).toEqual([
      { id: "v+acme/v ×3 threads", bytes: 3 * vaeBytes },
      { id: "sd", bytes: sdBytes },
    ]);
  }, 60_000);
});
