import { readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isModelDir, type ModelSource, sourceWeights } from "@hybrid/inference";
import { generateDefaultModels } from "@hybrid/model-tools";
import { ModelId } from "@hybrid/protocol";
import type { Logger } from "pino";
import type { Env } from "./env.ts";
import type { ModelSize } from "./memory-budget.ts";

/**
 * The names in `dir`, sorted; none when it is not a readable directory. Not filtered by entry
 * type: a symlink to a model directory serves as before.
 */
async function namesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

/**
 * The models under `modelsDir`: each sub-directory that is a model serves under its name
 * (`<dir>/sd-tiny` → `sd-tiny`); one that is not a model but holds models is an owner, its models
 * served under Hub-style ids (`<dir>/black-forest-labs/FLUX.1-schnell` →
 * `black-forest-labs/FLUX.1-schnell`, where `pnpm models pull` puts a repository). A name no
 * route could call (not a `ModelId`) is skipped with a warning.
 */
export async function discoverModels(modelsDir: string, log?: Logger): Promise<ModelSource[]> {
  const sources: ModelSource[] = [];
  const add = (id: string, dir: string) => {
    if (ModelId.safeParse(id).success) sources.push({ id, dir });
    else log?.warn({ dir, id }, "model directory skipped: its name is not a model id");
  };
  for (const name of await namesIn(modelsDir)) {
    const dir = join(modelsDir, name);
    if (await isModelDir(dir)) {
      add(name, dir);
      continue;
    }
    // Only one level deeper: an id has at most one slash.
    for (const sub of await namesIn(dir)) {
      const inner = join(dir, sub);
      if (await isModelDir(inner)) add(`${name}/${sub}`, inner);
    }
  }
  return sources;
}

/** The models this worker serves, from MODELS / MODELS_DIR (generating the defaults when asked). */
export async function modelSources(env: Env, log: Logger): Promise<ModelSource[]> {
  if (env.GENERATE_DEFAULT_MODELS && env.MODELS.length === 0) {
    const ids = await generateDefaultModels(env.MODELS_DIR);
    log.info({ dir: env.MODELS_DIR, ids }, "default models ready");
  }
  if (env.MODELS.length > 0) {
    // An `owner/name` id without a path is `<MODELS_DIR>/owner/name`: join takes the slash as a step.
    return env.MODELS.map(({ id, path }) => ({ id, dir: resolve(path ?? join(env.MODELS_DIR, id)) }));
  }
  return discoverModels(env.MODELS_DIR, log);
}

/**
 * What each served model's weights weigh, for the memory budget. Ids naming one directory share
 * its sessions, so they are counted once, as one entry (`a+b`). A pipeline is held once (pinned
 * to one session thread); a VAE-only model runs on every thread, each loading a copy, so it
 * counts once per session thread (`id ×N threads`).
 */
export async function modelSizes(sources: readonly ModelSource[], sessionThreads = 1): Promise<ModelSize[]> {
  const byDir = new Map<string, ModelSource[]>();
  for (const src of sources) byDir.set(resolve(src.dir), [...(byDir.get(resolve(src.dir)) ?? []), src]);
  const sizes: ModelSize[] = [];
  for (const group of byDir.values()) {
    const w = await sourceWeights(group[0]!);
    const copies = w.kind === "vae" ? sessionThreads : 1;
    const id = group.map((s) => s.id).join("+");
    sizes.push({ id: copies > 1 ? `${id} ×${copies} threads` : id, bytes: w.bytes * copies });
  }
  return sizes;
}
