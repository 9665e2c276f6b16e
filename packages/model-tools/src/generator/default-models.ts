import { generateDefaultPipelines } from "./pipeline-generator.ts";
import { generateDefaultVaes } from "./vae-generator.ts";

/**
 * Writes `<root>/<id>` for each of DEFAULT_MODELS (VAEs) and DEFAULT_PIPELINES (small diffusion
 * pipelines) and returns the ids. A model already generated with the same settings is left alone
 * unless `force` is set.
 */
export async function generateDefaultModels(root: string, opts: { force?: boolean } = {}): Promise<string[]> {
  const vaes = await generateDefaultVaes(root, opts);
  const pipelines = await generateDefaultPipelines(root, opts);
  return [...vaes, ...pipelines];
}
