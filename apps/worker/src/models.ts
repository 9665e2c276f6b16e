import { readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isModelDir, type ModelSource } from "@hybrid/inference";
import { generateDefaultModels } from "@hybrid/model-tools";
import type { Logger } from "pino";
import type { Env } from "./env.ts";

/** The models this worker serves, from MODELS / MODELS_DIR (generating the defaults when asked). */
export async function modelSources(env: Env, log: Logger): Promise<ModelSource[]> {
  if (env.GENERATE_DEFAULT_MODELS && env.MODELS.length === 0) {
    const ids = await generateDefaultModels(env.MODELS_DIR);
    log.info({ dir: env.MODELS_DIR, ids }, "default models ready");
  }
  if (env.MODELS.length > 0) {
    return env.MODELS.map(({ id, path }) => ({ id, dir: resolve(path ?? join(env.MODELS_DIR, id)) }));
  }
  const sources: ModelSource[] = [];
  for (const name of (await readdir(env.MODELS_DIR).catch(() => [])).sort()) {
    const dir = join(env.MODELS_DIR, name);
    if (await isModelDir(dir)) sources.push({ id: name, dir });
  }
  return sources;
}
