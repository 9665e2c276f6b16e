import {
  DEFAULT_GENERATE_LIMITS,
  DEFAULT_LIMITS,
  type GenerateLimits,
  type TensorLimits,
} from "@hybrid/protocol";
import { z } from "zod";
import { parseRedisUrl } from "./redis-url.ts";

/**
 * Settings the API and the workers share, as a zod shape each app spreads into its own env
 * schema (packages never read process.env themselves). They must agree within a deployment.
 */
export const SharedEnv = {
  /**
   * Redis holding the queues and payloads: `redis://[user:pass@]host:port[/db]` (`rediss://` for
   * TLS), or a Redis Cluster as `redis+cluster://[user:pass@]host1:port1,host2:port2,...`
   * (`rediss+cluster://` for TLS; any reachable nodes, the rest are discovered).
   */
  REDIS_URL: z
    .string()
    .superRefine((url, ctx) => {
      try {
        parseRedisUrl(url);
      } catch (e) {
        ctx.addIssue({ code: "custom", message: (e as Error).message });
      }
    })
    .default("redis://127.0.0.1:6379"),
  /** Key prefix of everything in Redis; API and workers of one deployment must agree. */
  QUEUE_PREFIX: z.string().min(1).default("hybrid"),
  /**
   * Seconds payloads live in Redis: an input waiting for a worker, and a result waiting to be
   * fetched (`GET /v1/jobs/{id}/result` answers 410 after that).
   */
  PAYLOAD_TTL_SECONDS: z.coerce.number().int().positive().default(3600),
  /** Seconds a job (its status, events, error) stays readable after it was submitted. */
  JOB_RETENTION_SECONDS: z.coerce
    .number()
    .int()
    .positive()
    .default(24 * 3600),
  /** Tries per job for transient worker failures (bad input is never retried). */
  JOB_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
  /** Tries per webhook delivery (network errors, 429 and 5xx are retried). */
  WEBHOOK_ATTEMPTS: z.coerce.number().int().min(1).max(30).default(12),
  /** First retry delay of a webhook delivery in ms; it doubles each try (12 tries span ~2.8 h). */
  WEBHOOK_BACKOFF_MS: z.coerce.number().int().positive().default(5000),
  /** Max pixels of one output image or frame (and of an image to encode). */
  MAX_OUTPUT_PIXELS: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxOutputPixels),
  /** Max elements of one input tensor. */
  MAX_ELEMENTS: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxElements),
  /** Max output frames of one video. */
  MAX_FRAMES: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxFrames),
  /** Max images in one batch. */
  MAX_BATCH: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxBatch),
  /** Max output pixels of one job, every image and frame together (batch × frames × height × width). */
  MAX_JOB_PIXELS: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxJobPixels),
  /** Max bytes of one job's answer (tensors checked before queueing, JPEG/PNG/mp4 once encoded). */
  MAX_OUTPUT_BYTES: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxOutputBytes),
  /** Longest text field of a generation, in characters (prompt, negative prompt joined, any other string). */
  MAX_TEXT_CHARS: z.coerce.number().int().positive().default(DEFAULT_GENERATE_LIMITS.maxPromptChars),
  /** Largest generated image (width × height), and largest init image for image-to-image. */
  MAX_IMAGE_PIXELS: z.coerce.number().int().positive().default(DEFAULT_GENERATE_LIMITS.maxPixels),
  /** Largest width or height of a generated image. */
  MAX_IMAGE_SIDE: z.coerce.number().int().positive().default(DEFAULT_GENERATE_LIMITS.maxSide),
  /** Most denoising steps a generation may ask for. */
  MAX_STEPS: z.coerce.number().int().positive().default(DEFAULT_GENERATE_LIMITS.maxSteps),
  /** Largest guidance scale a generation may ask for. */
  MAX_GUIDANCE: z.coerce.number().positive().default(DEFAULT_GENERATE_LIMITS.maxGuidance),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
};

/** The shared settings once parsed (an app's parsed env has these among its own). */
export type SharedSettings = { [K in keyof typeof SharedEnv]: z.infer<(typeof SharedEnv)[K]> };

/** The tensor limits out of parsed settings. */
export const limitsOf = (env: SharedSettings): TensorLimits => ({
  maxElements: env.MAX_ELEMENTS,
  maxOutputPixels: env.MAX_OUTPUT_PIXELS,
  maxFrames: env.MAX_FRAMES,
  maxBatch: env.MAX_BATCH,
  maxJobPixels: env.MAX_JOB_PIXELS,
  maxOutputBytes: env.MAX_OUTPUT_BYTES,
});

/** The generation limits out of parsed settings. */
export const generateLimitsOf = (env: SharedSettings): GenerateLimits => ({
  maxPixels: env.MAX_IMAGE_PIXELS,
  maxSide: env.MAX_IMAGE_SIDE,
  maxSteps: env.MAX_STEPS,
  maxGuidance: env.MAX_GUIDANCE,
  maxPromptChars: env.MAX_TEXT_CHARS,
});
