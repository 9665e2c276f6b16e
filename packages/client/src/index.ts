export type { JobList, JobObject, JobStatus, ModelEntry, ModelList, ModelTask } from "@hybrid/protocol";
export { HybridClient } from "./client.ts";
export type { DecodeParams, DecodeResult } from "./decode.ts";
export type { EncodeInput, EncodeParams, EncodeResult } from "./encode.ts";
export { HybridError, type HybridErrorCode, isHybridError } from "./errors.ts";
export type {
  GenerateCallOptions,
  GenerateResult,
  GenerationParams,
  ImageToImageParams,
  TextToImageParams,
} from "./generate.ts";
export { Job } from "./job.ts";
export type { JobEvent, StreamOptions, WaitOptions } from "./job-events.ts";
export type { Jobs, ListOptions, SubmitOptions } from "./jobs.ts";
export type { ImageOutput, JobOutput, JsonOutput, VideoOutput } from "./output.ts";
export { pythonQuery } from "./query.ts";
export { readSse, type SseMessage, SseParser } from "./sse.ts";
export type { TensorInput, TensorOutput } from "./tensor.ts";
export type { CallOptions, ClientOptions } from "./transport.ts";
export {
  type VerifyWebhookOptions,
  verifyWebhook,
  type WebhookHeaders,
  WebhookVerificationError,
} from "./webhooks.ts";
