import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { AppError, Family } from "@hybrid/protocol";
import { z } from "zod";

/** A model to serve: an id and a directory in Hugging Face optimum's ONNX layout. */
export interface ModelSource {
  id: string;
  dir: string;
  /** Overrides the family read from the directory. */
  family?: Family;
}

/** The parts of a diffusers VAE config we use. */
const VaeConfig = z.looseObject({
  _class_name: z.string().optional(),
  latent_channels: z.number().int().positive().optional(),
  scaling_factor: z.number().optional(),
  shift_factor: z.number().nullable().optional(),
  temporal_compression_ratio: z.number().int().positive().optional(),
  spatial_compression_ratio: z.number().int().positive().optional(),
});
export type VaeConfig = z.infer<typeof VaeConfig>;

const ModelIndex = z.looseObject({
  _class_name: z.string().optional(),
  _hybrid_family: z.string().optional(),
});

/** A model directory, resolved: where its graphs are and what its config says. */
export interface ModelFiles {
  id: string;
  family: Family;
  config: VaeConfig;
  decoderPath: string;
  encoderPath: string | null;
}

const exists = (p: string) =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

async function readJson(path: string): Promise<unknown> {
  if (!(await exists(path))) return undefined;
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new AppError("internal", `${path} is not valid JSON.`, { cause: e });
  }
}

/** Family from the pipeline / VAE class names a diffusers export carries. */
export function familyFromClassNames(names: Array<string | undefined>, latentChannels?: number): Family {
  const all = names.filter(Boolean).join(" ");
  if (/HunyuanVideo/i.test(all)) return "hunyuan-video";
  if (/Flux/i.test(all)) return "flux";
  if (/XL/.test(all)) return "sdxl";
  if (latentChannels === 16) return "flux";
  return "sd-v1";
}

/**
 * Reads a model directory in optimum's layout: `vae_decoder/model.onnx` (required),
 * `vae_encoder/model.onnx` (optional), the VAE config in `vae_decoder/config.json` or
 * `config.json`, and `model_index.json` for the pipeline class.
 */
export async function resolveModelDir(src: ModelSource): Promise<ModelFiles> {
  const decoderPath = join(src.dir, "vae_decoder", "model.onnx");
  if (!(await exists(decoderPath))) {
    throw new AppError(
      "internal",
      `Model ${src.id}: ${decoderPath} not found (expected optimum's ONNX layout).`,
    );
  }
  const encoderPath = join(src.dir, "vae_encoder", "model.onnx");
  const rawConfig =
    (await readJson(join(src.dir, "vae_decoder", "config.json"))) ??
    (await readJson(join(src.dir, "config.json"))) ??
    {};
  const config = VaeConfig.parse(rawConfig);
  const index = ModelIndex.parse((await readJson(join(src.dir, "model_index.json"))) ?? {});
  const declared = Family.safeParse(index._hybrid_family);
  const family =
    src.family ??
    (declared.success
      ? declared.data
      : familyFromClassNames([index._class_name, config._class_name], config.latent_channels));
  return {
    id: src.id,
    family,
    config,
    decoderPath,
    encoderPath: (await exists(encoderPath)) ? encoderPath : null,
  };
}
