import { resolve } from "node:path";
import { ModelId } from "@hybrid/protocol";
import { SharedEnv } from "@hybrid/service";
import { z } from "zod";
import { parseBytes } from "./memory-budget.ts";

const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");
const list = z.string().transform((s) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean),
);

/**
 * One `MODELS` entry: `id` (a sub-directory of MODELS_DIR: `sd-tiny`, or `owner/name` for
 * `<MODELS_DIR>/owner/name`) or `id=/path/to/dir`, split at the first `=` (a path may hold more;
 * an id never holds one). The id is a `ModelId`: a short one or a Hub-style `owner/name`; a
 * malformed entry stops the worker at start, named.
 */
export const ModelEntry = z.string().transform((entry, ctx) => {
  const eq = entry.indexOf("=");
  const id = (eq < 0 ? entry : entry.slice(0, eq)).trim();
  const path = eq < 0 ? null : entry.slice(eq + 1).trim();
  if (!ModelId.safeParse(id).success || path === "") {
    ctx.addIssue({
      code: "custom",
      message: `entry ${JSON.stringify(entry)} is malformed: expected an id (letters, digits, _ . -; or owner/name as on the Hugging Face Hub) or id=/path/to/dir`,
    });
    return z.NEVER;
  }
  return { id, path };
});
export type ModelEntry = z.infer<typeof ModelEntry>;

/** The worker's settings, parsed once from the environment. Defaults work on a laptop. */
export const Env = z.object({
  ...SharedEnv,
  /** Directory holding one sub-directory per model in optimum's ONNX layout. */
  MODELS_DIR: z
    .string()
    .default("models")
    .transform((p) => resolve(p)),
  /**
   * Models to serve, comma-separated: ids of sub-directories of MODELS_DIR (`owner/name`: its
   * `owner/name` sub-directory), or `id=/path/to/dir` (split at the first `=`). Empty: all of
   * MODELS_DIR (see models.ts).
   */
  MODELS: list.pipe(z.array(ModelEntry)).default([]),
  /** Write the small generated default models into MODELS_DIR when they are missing. */
  GENERATE_DEFAULT_MODELS: bool.default(true),
  /**
   * Session threads (each runs one model call at a time). A model's sessions live in one of them
   * (a model is held once per worker): more threads let different models run side by side, not
   * one model twice.
   */
  SESSION_THREADS: z.coerce.number().int().min(1).max(64).default(1),
  /**
   * BullMQ job lock, in ms; renewed every half of it by the main thread. A job whose lock lapses
   * (a blocked event loop, a dead worker) is handed to another worker. Unset: each kind's own
   * from the job catalog (decode and encode 30 s, generate 60 s); set: every kind's.
   */
  LOCK_DURATION_MS: z.coerce.number().int().min(100).optional(),
  /**
   * On SIGTERM, ms to let jobs in flight finish; what is still running then is handed back to
   * its queue for another worker.
   */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(30_000),
  /** BullMQ jobs in flight per model queue. */
  CONCURRENCY: z.coerce.number().int().min(1).max(256).default(1),
  /**
   * Jobs each decode/encode queue takes beyond those it runs at once (`CONCURRENCY` ×
   * `MAX_BATCH_SIZE`): their records and inputs are read while the model runs, so the session
   * thread goes from one short job to the next without waiting on Redis. 0: take a job only when
   * it can run (many workers with long VAE jobs, where a prefetched job would wait behind one).
   * Generations never prefetch.
   */
  PREFETCH: z.coerce.number().int().min(0).max(64).default(1),
  /**
   * Dynamic batching of decodes and encodes: up to this many batch entries of one model, shape,
   * dtype and output run as one batch (each job still gets exactly its own answer). 1 = off, the
   * default: on CPUs a batch runs no faster than its parts (`pnpm bench:throughput`); on a GPU it
   * usually does. A VAE queue then takes CONCURRENCY × MAX_BATCH_SIZE (+ PREFETCH) jobs in flight.
   */
  MAX_BATCH_SIZE: z.coerce.number().int().min(1).max(64).default(1),
  /**
   * How long the first job of a batch waits for more while a session thread is free, in ms. 0:
   * never wait; jobs that arrive while the threads are busy still run together.
   */
  BATCH_WINDOW_MS: z.coerce.number().min(0).max(1000).default(0),
  /**
   * onnxruntime execution providers in order of preference; cpu is always the fallback. Unset:
   * cuda then cpu (a model that falls back to cpu then says so at INFO); set: a model that falls
   * back from the first one listed says so at WARN.
   */
  EXECUTION_PROVIDERS: list.pipe(z.array(z.enum(["cuda", "tensorrt", "cpu"]))).optional(),
  /**
   * Bytes the served models' weights may take together (`8GiB`, `512MiB`, `4e9`, …): the worker
   * sums their weight files at start and refuses to start above it. Unset: 80% of the memory
   * free at start (within the container's limit).
   */
  MODEL_MEMORY_BUDGET: z
    .string()
    .transform((v, ctx) => {
      const n = parseBytes(v);
      if (n === null) {
        ctx.addIssue({
          code: "custom",
          message: `${JSON.stringify(v)} is not a size (e.g. 8GiB, 512MiB, 4000000000)`,
        });
        return z.NEVER;
      }
      return n;
    })
    .optional(),
  /** Threads onnxruntime uses within one run; 0 = one per physical core. */
  ORT_INTRA_OP_THREADS: z.coerce.number().int().min(0).default(0),
  /**
   * Let onnxruntime's idle threads spin between the ops of a run (its own default). They stop
   * spinning as soon as the run ends either way (`session.force_spinning_stop`): spinning after
   * it would hold the cores that delivering the answer needs.
   */
  ORT_ALLOW_SPINNING: bool.default(true),
  /** Frames per second of mp4 answers. */
  VIDEO_FPS: z.coerce.number().positive().default(15),
  /** ffmpeg binary; unset uses the one from the @ffmpeg-installer package. */
  FFMPEG_PATH: z.string().optional(),
  /** Port of the worker's own health endpoint (`/health/live`, `/health/ready`); 0 = none. */
  HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  /** Seconds between directory heartbeats; a worker silent for 3× this drops out. */
  HEARTBEAT_SECONDS: z.coerce.number().positive().default(5),
});
export type Env = z.infer<typeof Env>;

/** The providers a worker asks for when EXECUTION_PROVIDERS is unset. */
export const DEFAULT_PROVIDERS: Array<"cuda" | "tensorrt" | "cpu"> = ["cuda", "cpu"];

export const loadEnv = (source: NodeJS.ProcessEnv = process.env): Env => Env.parse(source);
