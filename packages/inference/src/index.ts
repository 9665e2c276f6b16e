export { ClipTokenizer } from "./diffusion/clip-tokenizer.ts";
export * from "./diffusion/diffusion-runtime.ts";
export { fluxImageIds, fluxTextIds } from "./diffusion/flow-conditioning.ts";
export { packPatches, unpackPatches } from "./diffusion/latents.ts";
export { createScheduler, type Scheduler } from "./diffusion/schedulers/index.ts";
export { type T5Encoding, T5Tokenizer } from "./diffusion/t5-tokenizer.ts";
export * from "./image.ts";
export * from "./model-dir.ts";
export * from "./model-weights.ts";
export * from "./random.ts";
export type { ExecutionProvider, SessionSettings } from "./sessions/session-cache.ts";
export { sessionOptions } from "./sessions/session-cache.ts";
export {
  type HostedModel,
  modelDirOf,
  SessionHost,
  type SessionHostOptions,
  type SessionProviders,
} from "./sessions/session-host.ts";
export * from "./vae/vae-runtime.ts";
export * from "./vae/video.ts";
