import {
  AppError,
  checkDecodeOutput,
  DEFAULT_LIMITS,
  type DecodeJob,
  type DType,
  type EncodeJob,
  type ModelInfo,
  planDecode,
  planEncodeTensor,
  type TensorLimits,
} from "@hybrid/protocol";
import { encodeImage } from "../image.ts";
import { floorToMultiple, type RgbImage, readImage, requireMinSize, resizeRgb } from "../image-input.ts";
import { detectModelDir, type ModelDir, type ModelSource } from "../model-dir.ts";
import { SessionHost, type SessionHostOptions } from "../sessions/session-host.ts";
import type { DecodeTask, EncodeTask, RunResult } from "../sessions/thread-protocol.ts";
import { Batcher, type BatchOptions } from "./batcher.ts";
import { encodeMp4 } from "./video.ts";

export interface RuntimeOptions extends SessionHostOptions {
  limits?: TensorLimits;
  /** ffmpeg binary for mp4 answers; defaults to the one shipped by @ffmpeg-installer. */
  ffmpegPath?: string;
  /** Frames per second of mp4 answers. @defaultValue 15 */
  fps?: number;
  /** Dynamic batching of decodes and encodes; absent or `maxBatchSize` 1: every task runs alone. */
  batching?: BatchOptions;
}

/** One answer: the body bytes and what the HTTP layer needs to describe them. */
export interface VaeAnswer {
  bytes: Uint8Array;
  contentType: string;
  shape?: number[];
  dtype?: DType;
  /** Time in `session.run`, ms (the rest of the answer's time is pre/postprocessing and encoding). */
  modelMs?: number;
  /**
   * Time the task waited for its session thread before it ran, ms: a prefetched job waits for
   * the one before it. Part of the job's queueing, not of its run.
   */
  waitMs?: number;
}

interface Served {
  info: ModelInfo;
  files: ModelDir;
}

/**
 * The VAE models a worker serves: resolves their directories, loads their sessions in the
 * session threads (once, at open), and turns jobs into answer bytes. Model runs and the
 * numeric work happen in the threads; image and mp4 encoding (sharp, ffmpeg) are async I/O here.
 */
export class VaeRuntime {
  private readonly batcher: Batcher<DecodeTask | EncodeTask, RunResult>;
  private readonly batching: boolean;
  /** When each task left the batcher for its thread (performance.now()), for {@link VaeAnswer.waitMs}. */
  private readonly dispatchedAt = new WeakMap<DecodeTask | EncodeTask, number>();

  private constructor(
    private readonly host: SessionHost,
    private readonly served: Map<string, Served>,
    private readonly opts: RuntimeOptions,
    private readonly ownsHost: boolean,
  ) {
    // Without batching too, tasks wait for a free thread in a batcher (of batches of one): there
    // a canceled job's task is dropped before it runs.
    const b = opts.batching ?? { maxBatchSize: 1, windowMs: 0 };
    this.batching = b.maxBatchSize > 1;
    const dispatched = (t: DecodeTask | EncodeTask) => this.dispatchedAt.set(t, performance.now());
    this.batcher = new Batcher<DecodeTask | EncodeTask, RunResult>(
      b,
      host,
      (t) => {
        dispatched(t);
        return host.run(t);
      },
      (tasks) => {
        for (const t of tasks) dispatched(t);
        return host.runBatch({ op: "batch", tasks } as Parameters<SessionHost["runBatch"]>[0]);
      },
    );
  }

  /**
   * Runs a task when its thread is free, in a batch with others of the same key when batching
   * is on. The key holds all that must match to share a run: the model file, the shape after the
   * batch axis, the dtype and every option (only the input bytes, the batch size and an encode's
   * seed may differ); without batching, the model file (tasks of a model run in order). A task
   * whose `signal` aborts before it runs is dropped.
   */
  private async runTask(
    task: DecodeTask | EncodeTask,
    entries: number,
    signal?: AbortSignal,
  ): Promise<RunResult & { waitMs: number }> {
    const submitted = performance.now();
    const result = await this.batcher.submit(this.batchKey(task), task, entries, signal);
    return { ...result, waitMs: (this.dispatchedAt.get(task) ?? submitted) - submitted };
  }

  private batchKey(task: DecodeTask | EncodeTask): string {
    if (!this.batching) return task.path;
    return JSON.stringify(
      task.op === "decode"
        ? [task.op, task.path, task.shape.slice(1), task.dtype, task.scaling, task.packed, task.output]
        : [
            task.op,
            task.path,
            task.input.kind === "tensor"
              ? [task.input.dtype, ...task.input.shape.slice(1)]
              : [task.input.width, task.input.height],
            task.scaling,
            task.sample,
            task.outputDtype,
          ],
    );
  }

  /**
   * Opens the models on `shared` session threads when given (so a pipeline's VAE sessions serve
   * the VAE endpoints too), or on threads of its own, closed with the runtime.
   */
  static async open(sources: ModelSource[], opts: RuntimeOptions, shared?: SessionHost): Promise<VaeRuntime> {
    const host = shared ?? new SessionHost(opts);
    try {
      const served = new Map<string, Served>();
      for (const src of sources) {
        const files = await detectModelDir(src.dir, src.family ? { family: src.family } : {});
        served.set(src.id, { files, info: await describeModel(host, src.id, files) });
      }
      return new VaeRuntime(host, served, opts, shared === undefined);
    } catch (e) {
      if (!shared) await host.close();
      throw e;
    }
  }

  get models(): ModelInfo[] {
    return [...this.served.values()].map((s) => s.info);
  }

  private model(id: string): Served {
    const s = this.served.get(id);
    if (!s) throw new AppError("unknown_model", `This worker does not serve model ${id}.`);
    return s;
  }

  private get limits() {
    return this.opts.limits ?? DEFAULT_LIMITS;
  }

  /**
   * Decodes latents into the answer the job asks for (PROTOCOL.md §1). `signal`: the job's
   * cancel; aborted before the model runs, the decode rejects with its reason, unrun.
   */
  async decode(job: DecodeJob, input: Uint8Array, signal?: AbortSignal): Promise<VaeAnswer> {
    const { info, files } = this.model(job.model);
    const plan = planDecode(
      { shape: job.shape, dtype: job.dtype, byteLength: input.byteLength, packed: job.packed },
      info,
      this.limits,
    );
    // Again here: a job may come from another producer, or an API with other limits.
    checkDecodeOutput(plan, job.output, this.limits);
    // An image answer decodes only the first latent of the batch.
    const entries = job.output.kind === "image" ? 1 : job.shape[0]!;
    const result = await this.runTask(
      {
        op: "decode",
        path: files.vaeDecoder,
        input,
        shape: job.shape,
        dtype: job.dtype,
        scaling: job.scaling,
        packed: job.packed,
        output: job.output,
      },
      entries,
      signal,
    );
    if (result.kind === "tensor") return tensorAnswer(result);
    if (job.output.kind === "mp4") {
      const bytes = await encodeMp4(result.data, {
        frames: result.frames,
        width: result.width,
        height: result.height,
        fps: this.opts.fps ?? 15,
        ...(this.opts.ffmpegPath ? { ffmpegPath: this.opts.ffmpegPath } : {}),
      });
      return { bytes, contentType: "video/mp4", modelMs: result.modelMs, waitMs: result.waitMs };
    }
    const png = job.output.kind === "image" && job.output.format === "png";
    const bytes = await encodeImage(result.data, result.width, result.height, png ? "png" : "jpeg");
    return {
      bytes,
      contentType: png ? "image/png" : "image/jpeg",
      modelMs: result.modelMs,
      waitMs: result.waitMs,
    };
  }

  /** Encodes an image file or an image tensor into latents (PROTOCOL.md §2); `signal` as for {@link decode}. */
  async encode(job: EncodeJob, input: Uint8Array, signal?: AbortSignal): Promise<VaeAnswer> {
    const { info, files } = this.model(job.model);
    if (!files.vaeEncoder) throw new AppError("unsupported_operation", `Model ${job.model} has no encoder.`);
    const common = {
      op: "encode" as const,
      path: files.vaeEncoder,
      scaling: job.scaling,
      sample: job.sample,
      seed: job.seed,
      outputDtype: job.outputDtype,
    };
    if (job.tensor) {
      planEncodeTensor({ ...job.tensor, byteLength: input.byteLength }, info, this.limits);
      return tensorAnswer(
        await this.runTask(
          { ...common, input: { kind: "tensor", bytes: input, ...job.tensor } },
          job.tensor.shape[0]!,
          signal,
        ),
      );
    }
    const rgb = await this.readImage(input, info.spatial_compression);
    return tensorAnswer(await this.runTask({ ...common, input: { kind: "rgb", ...rgb } }, 1, signal));
  }

  /** Decodes an image file to RGB, sized down to multiples of the VAE's compression like diffusers' VaeImageProcessor. */
  private async readImage(bytes: Uint8Array, multiple: number): Promise<RgbImage> {
    // One image: the per-image cap, or the per-job one where that is lower.
    const img = await readImage(bytes, Math.min(this.limits.maxOutputPixels, this.limits.maxJobPixels));
    const width = floorToMultiple(img.width, multiple);
    const height = floorToMultiple(img.height, multiple);
    requireMinSize(width, height, multiple);
    return { data: await resizeRgb(img.data, img.width, img.height, width, height), width, height };
  }

  async close(): Promise<void> {
    this.batcher?.close();
    if (this.ownsHost) await this.host.close();
  }
}

function tensorAnswer(r: RunResult & { waitMs: number }): VaeAnswer {
  if (r.kind !== "tensor") throw new AppError("internal", "Expected a tensor from the session thread.");
  return {
    bytes: r.bytes,
    contentType: "tensor/binary",
    shape: r.shape,
    dtype: r.dtype,
    modelMs: r.modelMs,
    waitMs: r.waitMs,
  };
}

/** Loads a model's sessions and reads its layout and dtype from their metadata. */
async function describeModel(host: SessionHost, id: string, files: ModelDir): Promise<ModelInfo> {
  const decoder = await host.describe(files.vaeDecoder);
  const input = decoder.inputs[0];
  if (!input || decoder.outputs.length === 0)
    throw new AppError("internal", `Model ${id}: the decoder graph has no inputs or outputs.`);
  const rank = input.shape.length;
  if (rank !== 4 && rank !== 5)
    throw new AppError(
      "internal",
      `Model ${id}: decoder input ${input.name} has rank ${rank}; expected 4 or 5.`,
    );
  if (input.type !== "float32" && input.type !== "float16") {
    throw new AppError(
      "internal",
      `Model ${id}: decoder input ${input.name} is ${input.type}; expected float32 or float16.`,
    );
  }
  if (files.vaeEncoder) await host.describe(files.vaeEncoder);
  const g = files.geometry;
  // The graph's own channel count when it declares one; the config's (or the family's) otherwise.
  const channelsDim = input.shape[1];
  const latentChannels = typeof channelsDim === "number" && channelsDim > 0 ? channelsDim : g.latentChannels;
  return {
    id,
    family: files.family,
    task: "vae",
    operations: files.vaeEncoder ? ["decode", "encode"] : ["decode"],
    latent_channels: latentChannels,
    latent_rank: rank,
    spatial_compression: g.spatialFactor,
    ...(rank === 5 ? { temporal_compression: g.temporalFactor ?? 4 } : {}),
    scaling_factor: g.scalingFactor,
    shift_factor: g.shiftFactor,
    dtype: input.type,
  };
}
