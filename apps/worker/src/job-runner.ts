import type { DiffusionRuntime, GenerateProgress, VaeAnswer, VaeRuntime } from "@hybrid/inference";
import {
  AppError,
  checkOutputBytes,
  DEFAULT_LIMITS,
  type GenerateJob,
  isAppError,
  type JobData,
  type JobKind,
  type JobResult,
  publicError,
  serializeJobError,
} from "@hybrid/protocol";
import type {
  JobDataOf,
  JobHandler,
  JobHandlers,
  JobMeta,
  JobStore,
  PayloadStore,
  ReplySender,
} from "@hybrid/queue";
import { lazyChild } from "@hybrid/service";
import { type Job, UnrecoverableError } from "bullmq";
import type { Logger } from "pino";
import type { JobTimingSink } from "./metrics.ts";

const canceled = () => new AppError("canceled", "The job was canceled.");

/** What runs the work: the VAEs and the diffusion pipelines of this worker. */
export interface Runtimes {
  vae: VaeRuntime;
  diffusion: DiffusionRuntime;
  /** Largest init image accepted for image-to-image, in pixels. */
  maxImagePixels: number;
  /** Largest answer of one job, in bytes (MAX_OUTPUT_BYTES). @defaultValue 128 MiB */
  maxOutputBytes?: number;
}

/** What a run answers: the bytes and the typed fields that describe them. */
export interface Answer extends VaeAnswer {
  seed?: number;
  promptTruncated?: true;
  warnings?: string[];
}

/** What a run gets besides its data: its input payload, progress reporting, the cancel signal, a logger. */
export interface RunContext {
  input: Buffer | null;
  progress: (p: GenerateProgress) => void;
  signal: AbortSignal | undefined;
  log: Logger;
}

/** The model work of one kind: data and context in, answer out. */
export type Run<K extends JobKind> = (data: JobDataOf<K>, ctx: RunContext) => Promise<Answer>;
/** A run for every kind a model serves: leave one out and it does not compile. */
export type Runs = { [K in JobKind]: Run<K> };

/** The runs of this worker's runtimes, one per kind. */
export function modelRuns(rt: Runtimes): Runs {
  // Compressed answers (JPEG, PNG, mp4) have their size only now; tensors were checked at
  // admission. Over the cap is a 413: the runner fails the job without retrying it.
  const limits = { maxOutputBytes: rt.maxOutputBytes ?? DEFAULT_LIMITS.maxOutputBytes };
  const capped = async (answer: Promise<Answer>): Promise<Answer> => {
    const a = await answer;
    checkOutputBytes("The answer", a.bytes.byteLength, limits);
    return a;
  };
  return {
    // The cancel signal drops a decode or encode still waiting for its thread (a prefetched job).
    decode: (data, { input, signal }) => capped(rt.vae.decode(data, needInput(input), signal)),
    encode: (data, { input, signal }) => capped(rt.vae.encode(data, needInput(input), signal)),
    generate: (data, ctx) => capped(generate(rt, data, ctx)),
  };
}

/**
 * A failure caused by the job's size rather than by this attempt: an allocation the runtime
 * refused (a typed array or buffer over V8's or Node's maximum, onnxruntime out of memory).
 * Retrying it would fail the same way after the same work, so it becomes a 413 `too_large`.
 */
export function sizeFailure(e: unknown): AppError | null {
  for (let c = e, depth = 0; c && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    const err = c as { name?: unknown; message?: unknown; code?: unknown };
    const message = typeof err.message === "string" ? err.message : "";
    const tooBig =
      (err.name === "RangeError" &&
        (/allocation failed|Invalid (typed )?array length|Invalid string length|Array buffer|out of memory/i.test(
          message,
        ) ||
          // Buffer.alloc over Node's maximum.
          (err.code === "ERR_OUT_OF_RANGE" && message.includes('"size"')))) ||
      err.code === "ERR_BUFFER_TOO_LARGE" ||
      err.code === "ERR_STRING_TOO_LONG" ||
      /Failed to allocate memory|bad_alloc|std::bad_alloc/.test(message);
    if (tooBig)
      return new AppError(
        "too_large",
        "The job is too large for this worker's memory: ask for fewer or smaller images or frames (MAX_JOB_PIXELS, MAX_OUTPUT_BYTES).",
        { cause: e },
      );
  }
  return null;
}

/** A VAE job's input is always there: the runner refuses a job whose payload expired. */
const needInput = (input: Buffer | null): Buffer => {
  if (!input) throw new AppError("payload_expired", "The job's input expired before a worker picked it up.");
  return input;
};

export interface RunnerOptions {
  /** Gets the read/run/write times of each job that succeeds. */
  metrics?: JobTimingSink;
  /** Sends each outcome straight to the API waiting for it (else answers are only stored). */
  replies?: ReplySender;
}

/**
 * Every step of a job around its run, the same for every kind: read its record and payload,
 * report its events, run it, deliver or store the answer, and turn failures into errors BullMQ
 * understands. Bad input (and a cancel) fails at once (UnrecoverableError); anything else
 * rethrows so BullMQ retries it. `signal` aborts when the job is canceled while it runs: a
 * generation stops at its next step; a VAE run cannot stop half-way, so its result is discarded.
 * Returns a handler per kind, for `openJobWorker`.
 */
export function createJobRunner(
  runs: Runs,
  store: PayloadStore,
  jobs: JobStore,
  log: Logger,
  { metrics, replies }: RunnerOptions = {},
): JobHandlers<JobKind> {
  const handle = async (data: JobData, job: Job, signal?: AbortSignal): Promise<JobResult> => {
    const jlog = lazyChild(log, {
      jobId: job.id,
      queue: job.queueName,
      model: data.model,
      attempt: job.attemptsMade + 1,
    });
    const started = performance.now();
    // job.timestamp is the API's clock at enqueueing: ms precision, and clock skew across machines.
    const queueMs = Math.max(0, Date.now() - job.timestamp);
    let events: EventReporter | undefined;
    const reply = data.reply;
    try {
      // The record (cancel flag, `started` event) and the input: one round trip.
      const { meta, payload: input } = await jobs.records.start(
        job.id ?? "",
        data.input ? store.keyOf(data.input) : null,
      );
      if (meta?.canceledAt) throw canceled();
      jlog.info({ kind: data.kind, queuedMs: queueMs }, "job started");
      events = new EventReporter(jobs, meta, job, jlog);
      events.started();
      if (data.input && !input)
        throw new AppError("payload_expired", "The job's input expired before a worker picked it up.");
      const read = performance.now();
      const reporter = events;
      const ctx: RunContext = { input, progress: (p) => reporter.progress(p), signal, log: jlog };
      const answer = await (runs[data.kind] as Run<JobKind>)(data as never, ctx);
      // Every event of the run is out before the job ends (its terminal event comes after).
      await events.flush();
      if (signal?.aborted) throw canceled();
      const ran = performance.now();
      // A prefetched job's wait for its thread is queueing, not running.
      const waitMs = answer.waitMs ?? 0;
      const timings = {
        queueMs: queueMs + waitMs,
        readMs: read - started,
        runMs: Math.max(0, ran - read - waitMs),
        ...(answer.modelMs !== undefined ? { modelMs: answer.modelMs } : {}),
        // The reply carries 0: it leaves before the time to store or send it is known, which
        // the API then counts in its `deliver`.
        writeMs: 0,
      };
      const out: JobResult = {
        result: store.newKey(),
        contentType: answer.contentType,
        bytes: answer.bytes.byteLength,
        ...(answer.shape ? { shape: answer.shape } : {}),
        ...(answer.dtype ? { dtype: answer.dtype } : {}),
        ...(answer.seed !== undefined ? { seed: answer.seed } : {}),
        ...(answer.promptTruncated ? { promptTruncated: true as const } : {}),
        ...(answer.warnings ? { warnings: answer.warnings } : {}),
        timings: rounded(timings),
      };
      // Sent straight to the API waiting for it, or stored (see reply-channel.ts for who stores).
      let delivered = out;
      if (replies) delivered = await replies.deliver(job.id ?? "", data.reply, out, answer.bytes);
      else await store.putAt(out.result, answer.bytes);
      const done = performance.now();
      timings.writeMs = done - ran;
      jlog.info(
        {
          kind: data.kind,
          bytes: answer.bytes.byteLength,
          queuedMs: Math.round(timings.queueMs),
          readMs: Math.round(timings.readMs),
          runMs: Math.round(timings.runMs),
          modelMs: timings.modelMs === undefined ? undefined : Math.round(timings.modelMs),
          writeMs: Math.round(timings.writeMs),
          inline: delivered.inline,
        },
        "job done",
      );
      metrics?.timings(data.kind, data.model, timings);
      return { ...delivered, timings: rounded(timings) };
    } catch (caught) {
      // The run's events precede its end, failed or not.
      await events?.flush();
      // A canceled job ends as canceled whatever its run threw (a dropped task rejects with the
      // signal's reason).
      const e = signal?.aborted ? canceled() : isAppError(caught) ? caught : (sizeFailure(caught) ?? caught);
      const rejected = isAppError(e) && e.status < 500;
      const err = rejected
        ? new UnrecoverableError(serializeJobError(e))
        : // The client gets the code and a fixed sentence; the detail is logged below, with the job id.
          new Error(
            serializeJobError(publicError(isAppError(e) ? e : new AppError("internal", "internal"))),
            {
              cause: e,
            },
          );
      if (rejected)
        jlog.info({ code: e.code, err: e.message }, e.code === "canceled" ? "job canceled" : "job rejected");
      else jlog.error({ err: e }, "job failed");
      // A failure that ends the job goes to the waiting API too; one that BullMQ retries does not.
      if (rejected || job.attemptsMade + 1 >= (job.opts.attempts ?? 1))
        await replies?.fail(job.id ?? "", reply, err.message);
      throw err;
    }
  };
  // Every kind goes through the same steps; the typed map is what makes a missing kind an error.
  const handler = handle as JobHandler<JobKind>;
  return { decode: handler, encode: handler, generate: handler } as JobHandlers<JobKind>;
}

/** Timings to 0.01 ms: enough for any breakdown, and short in the job's stored result. */
function rounded<T extends Record<string, number>>(t: T): T {
  const out: Record<string, number> = {};
  for (const k in t) out[k] = Math.round((t[k] as number) * 100) / 100;
  return out as T;
}

/**
 * A job's `started` and `progress` events, published in order off the critical path: the run
 * does not wait for Redis, and {@link flush} waits for all of them before the job may end.
 */
class EventReporter {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly jobs: JobStore,
    private readonly meta: JobMeta | null,
    private readonly job: Job,
    private readonly log: Logger,
  ) {}

  private enqueue(fn: (meta: JobMeta) => Promise<void>) {
    const meta = this.meta;
    if (!meta) return;
    this.chain = this.chain
      .then(() => fn(meta))
      .catch((err: Error) => this.log.warn({ err: err.message }, "job event not published"));
  }

  started(): void {
    // Only a logged job has readers for it (see JobMeta.logged).
    if (!this.meta?.logged) return;
    this.enqueue(async (meta) => {
      const view = await this.jobs.views.build(meta, this.job, "active");
      if (view) await this.jobs.events.publish(meta, "started", view);
    });
  }

  progress(p: GenerateProgress): void {
    this.enqueue(async (meta) => {
      const view = await this.jobs.views.build(meta, this.job, "active");
      if (view) await this.jobs.events.publish(meta, "progress", { ...view, progress: p });
    });
  }

  flush(): Promise<void> {
    return this.chain;
  }
}

/** A generation, with a progress event after every step. */
async function generate(rt: Runtimes, data: GenerateJob, ctx: RunContext): Promise<Answer> {
  const out = await rt.diffusion.generate(data.model, data.params, {
    init: ctx.input,
    format: data.format,
    maxPixels: rt.maxImagePixels,
    onProgress: ctx.progress,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  const answer: Answer = { bytes: out.bytes, contentType: out.contentType, seed: data.params.seed };
  if (out.truncated) {
    const by = out.truncatedBy ?? "77 tokens";
    answer.promptTruncated = true;
    answer.warnings = [`The prompt is longer than the text encoder takes (${by}); the rest was ignored.`];
    ctx.log.warn(`prompt longer than the text encoder takes: truncated to ${by}`);
  }
  return answer;
}
