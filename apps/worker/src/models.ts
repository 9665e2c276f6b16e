import { readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isModelDir, type ModelSource, sourceWeights } from "@hybrid/inference";
import { generateDefaultModels } from "@hybrid/model-tools";
import type { Logger } from "pino";
import type { Env } from "./env.ts";
import type { ModelSize } from "./memory-budget.ts";

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

/**
 * What each served model's weights weigh, for the memory budget. Ids naming one directory share
 * its sessions, so they are counted once, as one entry (`a+b`).
 */
export async function modelSizes(sources: readonly ModelSource[]): Promise<ModelSize[]> {
  const byDir = new Map<string, ModelSource[]>();
  for (const src of sources) byDir.set(resolve(src.dir), [...(byDir.get(resolve(src.dir)) ?? []), src]);
  const sizes: ModelSize[] = [];
  for (const group of byDir.values())
    sizes.push({ id: group.map((s) => s.id).join("+"), bytes: (await sourceWeights(group[0]!)).bytes });
  return sizes;
}
