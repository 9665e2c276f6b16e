import { z } from "zod";

/** The API's settings, parsed once from the environment. Defaults work on a laptop. */
export const Env = z.object({
  /** HTTP port. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default("0.0.0.0"),
  /** Redis holding the queues and payloads. */
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  /** Key prefix of everything in Redis; API and workers of one deployment must agree. */
  QUEUE_PREFIX: z.string().min(1).default("hybrid"),
  /** How long a synchronous request waits for its job before answering 504 with the job id, in ms. */
  REQUEST_TIMEOUT_MS: z.coerce.number().int().positive().default(120_000),
  /** Largest request body accepted, in bytes (larger: 413). */
  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(64 * 1024 * 1024),
  /** Seconds an input payload stays in Redis if no worker collects it. */
  PAYLOAD_TTL_SECONDS: z.coerce.number().int().positive().default(600),
  /** Tries per job for transient worker failures (bad input is never retried). */
  JOB_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
  MAX_OUTPUT_PIXELS: z.coerce
    .number()
    .int()
    .positive()
    .default(2048 * 2048),
  MAX_ELEMENTS: z.coerce
    .number()
    .int()
    .positive()
    .default(2 ** 26),
  MAX_FRAMES: z.coerce.number().int().positive().default(129),
  MAX_BATCH: z.coerce.number().int().positive().default(16),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});
export type Env = z.infer<typeof Env>;

export const loadEnv = (source: NodeJS.ProcessEnv = process.env): Env => Env.parse(source);
