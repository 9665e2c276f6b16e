import { DEFAULT_LIMITS, type TensorLimits } from "@hybrid/protocol";
import { z } from "zod";

/**
 * Settings the API and the workers share, as a zod shape each app spreads into its own env
 * schema (packages never read process.env themselves). They must agree within a deployment.
 */
export const SharedEnv = {
  /** Redis holding the queues and payloads. */
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  /** Key prefix of everything in Redis; API and workers of one deployment must agree. */
  QUEUE_PREFIX: z.string().min(1).default("hybrid"),
  /** Seconds a payload (input or result) stays in Redis if nobody collects it. */
  PAYLOAD_TTL_SECONDS: z.coerce.number().int().positive().default(600),
  /** Max pixels of one output image or frame (and of an image to encode). */
  MAX_OUTPUT_PIXELS: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxOutputPixels),
  /** Max elements of one input tensor. */
  MAX_ELEMENTS: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxElements),
  /** Max output frames of one video. */
  MAX_FRAMES: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxFrames),
  /** Max images in one batch. */
  MAX_BATCH: z.coerce.number().int().positive().default(DEFAULT_LIMITS.maxBatch),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
};

type Shared = { [K in keyof typeof SharedEnv]: z.infer<(typeof SharedEnv)[K]> };

/** The tensor limits out of parsed settings. */
export const limitsOf = (env: Shared): TensorLimits => ({
  maxElements: env.MAX_ELEMENTS,
  maxOutputPixels: env.MAX_OUTPUT_PIXELS,
  maxFrames: env.MAX_FRAMES,
  maxBatch: env.MAX_BATCH,
});
