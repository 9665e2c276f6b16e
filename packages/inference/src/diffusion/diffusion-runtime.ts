import { MessageChannel } from "node:worker_threads";
import {
  AppError,
  ErrorCode,
  type GenerateDefaults,
  type GenerateParams,
  type GenerationInfo,
  SchedulerName,
  schedulerNameOf,
} from "@hybrid/protocol";
import { encodeImage } from "../image.ts";
import { floorToMultiple, readImage, requireMinSize, resizeRgb } from "../image-input.ts";
import { detectModelDir, type ModelSource, type PipelineDir } from "../model-dir.ts";
import type { SessionHost } from "../sessions/session-host.ts";
import type { ProgressMessage } from "../sessions/thread-protocol.ts";
import { TEXT_CONDITIONING } from "./conditioning.ts";
import { sizePatch } from "./latents.ts";

/** One step done, as the job reports it; `preview` is a small JPEG data URL when asked for. */
export interface GenerateProgress {
  step: number;
  total: number;
  preview?: string;
}

export interface GenerateOptions {
  /** Image-to-image: the init image file (PNG, JPEG or WebP). */
  init: Uint8Array | null;
  format: "png" | "jpeg";
  /** Aborting it stops the generation at its next step (AppError `canceled`). */
  signal?: AbortSignal;
  onProgress?: (p: GenerateProgress) => void;
  /** Largest init image accepted, in pixels. */
  maxPixels: number;
}

export interface GenerateAnswer {
  bytes: Uint8Array;
  contentType: string;
  width: number;
  height: number;
  /** The prompt was cut to what a text encoder takes. */
  truncated: boolean;
  /** What cut it, when not CLIP's 77 tokens alone. */
  truncatedBy?: string;
}

/**
 * The diffusion pipelines a worker serves, on the same session threads as its VAEs (a
 * pipeline's VAE sessions are the VAE endpoints' sessions: loaded once per thread). The denoise
 * loop runs in a thread; here only image decoding/encoding and progress relaying happen.
 */
export class DiffusionRuntime {
  private constructor(
    private readonly host: SessionHost,
    private readonly served: Map<string, { files: PipelineDir; info: GenerationInfo }>,
  ) {}

  /** Finds the pipelines among `sources` (the VAE exports are left out) and loads their sessions. */
  static async open(sources: ModelSource[], host: SessionHost): Promise<DiffusionRuntime> {
    const served = new Map<string, { files: PipelineDir; info: GenerationInfo }>();
    for (const src of sources) {
      const files = await detectModelDir(src.dir, src.family ? { family: src.family } : {});
      if (files.kind !== "pipeline") continue;
      // A pipeline's sessions live in one thread: its weights are held once per worker.
      host.pin(files.dir);
      for (const path of [
        ...files.textEncoders,
        files.denoiser,
        files.vaeDecoder,
        ...(files.vaeEncoder ? [files.vaeEncoder] : []),
      ])
        await host.describe(path);
      served.set(src.id, { files, info: generationInfo(files) });
    }
    return new DiffusionRuntime(host, served);
  }

  /** What each pipeline does, by model id (workers announce it; the API validates with it). */
  get models(): Map<string, GenerationInfo> {
    return new Map([...this.served].map(([id, s]) => [id, s.info]));
  }

  async generate(model: string, params: GenerateParams, opts: GenerateOptions): Promise<GenerateAnswer> {
    const served = this.served.get(model);
    if (!served) throw new AppError("unknown_model", `This worker does not generate with model ${model}.`);
    const { files, info } = served;
    let init: { data: Uint8Array; width: number; height: number } | null = null;
    let width = params.width ?? info.defaults.width;
    let height = params.height ?? info.defaults.height;
    if (params.task === "image-to-image") {
      if (!opts.init) throw new AppError("invalid_image", "Image-to-image needs an image.");
      if (!files.vaeEncoder)
        throw new AppError("unsupported_operation", `Model ${model} has no VAE encoder.`);
      const img = await readImage(opts.init, opts.maxPixels);
      // Generate at the image's size, down to whole latents (and patches), unless the request gave one.
      const multiple = files.geometry.spatialFactor * sizePatch(files);
      width = params.width ?? floorToMultiple(img.width, multiple);
      height = params.height ?? floorToMultiple(img.height, multiple);
      requireMinSize(width, height, multiple);
      init = { data: await resizeRgb(img.data, img.width, img.height, width, height), width, height };
    }

    const cancel = new Int32Array(new SharedArrayBuffer(4));
    const abort = () => Atomics.store(cancel, 0, 1);
    opts.signal?.addEventListener("abort", abort, { once: true });
    if (opts.signal?.aborted) abort();
    const { port1, port2 } = new MessageChannel();
    // Previews are encoded asynchronously: a chain keeps the reports in step order.
    let reports = Promise.resolve();
    let allReported: () => void = () => {};
    const lastReport = new Promise<void>((r) => {
      allReported = r;
    });
    port2.on("message", (m: ProgressMessage) => {
      if (m.done) {
        reports = reports.then(allReported);
        return;
      }
      reports = reports.then(async () => {
        const preview = m.preview
          ? `data:image/jpeg;base64,${(await encodeImage(m.preview.data, m.preview.width, m.preview.height, "jpeg", { quality: 60 })).toString("base64")}`
          : undefined;
        opts.onProgress?.({ step: m.step, total: m.total, ...(preview ? { preview } : {}) });
      });
    });
    try {
      const out = await this.host
        .generate({ op: "generate", model, files, params, width, height, init, progress: port1, cancel })
        .catch((e: unknown) => {
          throw opts.signal?.aborted ? new AppError("canceled", "The job was canceled.") : fromThread(e);
        });
      // Progress travels on its own port and may arrive after the result: wait for the last one.
      await lastReport;
      await reports;
      let data = out.data;
      let w = out.width;
      let h = out.height;
      if (params.target_size) {
        data = await resizeRgb(data, w, h, params.target_size.width, params.target_size.height);
        ({ width: w, height: h } = params.target_size);
      }
      const bytes = await encodeImage(data, w, h, opts.format);
      return {
        bytes,
        contentType: `image/${opts.format}`,
        width: w,
        height: h,
        truncated: out.truncated,
        ...(out.truncatedBy ? { truncatedBy: out.truncatedBy } : {}),
      };
    } finally {
      port2.close();
      opts.signal?.removeEventListener("abort", abort);
    }
  }
}

/**
 * An error from a session thread: the structured clone keeps an AppError's fields but not its
 * class, so its code (a 4xx is not retried) is restored here.
 */
function fromThread(e: unknown): unknown {
  const f = e as { code?: unknown; message?: unknown; details?: unknown };
  const code = ErrorCode.safeParse(f?.code);
  if (!code.success || typeof f.message !== "string") return e;
  return new AppError(code.data, f.message, { cause: e, details: f.details });
}

/** Defaults a request leaves out, from the pipeline's own configs. */
function generationInfo(files: PipelineDir): GenerationInfo {
  const lcm = files.timeCondProjDim !== null;
  const className = files.scheduler._class_name;
  const transformer = files.transformer;
  // diffusers' default sizes: the denoiser's sample_size, else 64 latents (SD) or 128 (Flux).
  const side = (files.sampleSize ?? (transformer ? 128 : 64)) * files.geometry.spatialFactor;
  const defaults: GenerateDefaults = {
    width: side,
    height: side,
    num_inference_steps: flowDefaultSteps(files) ?? (lcm ? 4 : 25),
    guidance_scale: lcm ? 8 : TEXT_CONDITIONING[files.layout.name].guidanceScale,
    scheduler:
      (typeof className === "string" ? schedulerNameOf(className) : null) ?? SchedulerName.enum.euler,
    // diffusers' img2img defaults: 0.6 for Flux and SD3.
    strength: transformer ? 0.6 : 0.8,
  };
  // Transformers take 2×2 patches of latents: sizes in whole patches.
  const multiple = files.geometry.spatialFactor * sizePatch(files);
  return {
    tasks: files.vaeEncoder ? ["text-to-image", "image-to-image"] : ["text-to-image"],
    defaults,
    ...(multiple !== 8 ? { size_multiple: multiple } : {}),
  };
}

/**
 * Steps as the model cards run them: Flux schnell (timestep-distilled, no guidance input) 4,
 * Flux dev and SD3 28; null for UNets.
 */
function flowDefaultSteps(files: PipelineDir): number | null {
  if (!files.transformer) return null;
  return files.layout.name === "flux" && !files.transformer.guidance_embeds ? 4 : 28;
}
