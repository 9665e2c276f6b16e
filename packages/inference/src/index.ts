export { ClipTokenizer } from "./diffusion/clip-tokenizer.ts";
export * from "./diffusion/diffusion-runtime.ts";
export { createScheduler, type Scheduler } from "./diffusion/schedulers/index.ts";
export * from "./generator/index.ts";
export { DEFAULT_PIPELINES, generateDefaultPipelines, generatePipelineModel } from "./generator/pipelines.ts";
export {
  defaultModelId,
  PIPELINE_FILES,
  type PullModelOptions,
  type PullProgress,
  type PullResult,
  pullModel,
} from "./hub-pull.ts";
export * from "./image.ts";
export * from "./model-dir.ts";
export * from "./random.ts";
export type { ExecutionProvider, SessionSettings } from "./session-cache.ts";
export { SessionHost, type SessionHostOptions } from "./session-host.ts";
export * from "./vae-runtime.ts";
export * from "./video.ts";
