import { SharedEnv } from "@hybrid/queue";
import { z } from "zod";

/** The API's settings, parsed once from the environment. Defaults work on a laptop. */
export const Env = z.object({
  ...SharedEnv,
  /** HTTP port. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default("0.0.0.0"),
  /** How long a synchronous request waits for its job before answering 504 with the job id, in ms. */
  REQUEST_TIMEOUT_MS: z.coerce.number().int().positive().default(120_000),
  /** Largest request body accepted, in bytes (larger: 413). */
  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(64 * 1024 * 1024),
  /** Tries per job for transient worker failures (bad input is never retried). */
  JOB_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
});
export type Env = z.infer<typeof Env>;

export const loadEnv = (source: NodeJS.ProcessEnv = process.env): Env => Env.parse(source);
