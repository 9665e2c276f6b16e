export { generateDefaultModels } from "./generator/default-models.ts";
export { moveWeightsToExternalData } from "./generator/external-data.ts";
export {
  DEFAULT_PIPELINES,
  type GeneratePipelineOptions,
  generateDefaultPipelines,
  generatePipelineModel,
  type PipelineKind,
} from "./generator/pipeline-generator.ts";
export {
  DEFAULT_MODELS,
  type GenerateVaeOptions,
  generateDefaultVaes,
  generateVaeModel,
} from "./generator/vae-generator.ts";
export {
  defaultModelId,
  modelDirOf,
  PIPELINE_FILES,
  type PullModelOptions,
  type PullProgress,
  type PullResult,
  pullModel,
  shortModelId,
} from "./hub-pull.ts";
