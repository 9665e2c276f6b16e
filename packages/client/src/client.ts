import type { ModelEntry, ModelList } from "@hybrid/protocol";
import { type DecodeParams, type DecodeResult, prepareDecode, readDecode } from "./decode.ts";
import {
  type EncodeInput,
  type EncodeParams,
  type EncodeResult,
  prepareEncode,
  readEncode,
} from "./encode.ts";
import {
  type GenerateCallOptions,
  type GenerateResult,
  generateHeaders,
  type ImageToImageParams,
  prepareImageToImage,
  prepareTextToImage,
  readGenerate,
  type TextToImageParams,
} from "./generate.ts";
import { Jobs } from "./jobs.ts";
import {
  type CallOptions,
  type ClientOptions,
  callHeaders,
  type PreparedRequest,
  Transport,
} from "./transport.ts";

/**
 * A client of a hybrid-inference service. Each call waits for its answer (as Hugging Face's
 * clients do); `client.jobs` submits the same requests as jobs and follows them. A `model` is a
 * short id (`sd-tiny`) or a Hub-style `owner/name` (`black-forest-labs/FLUX.1-schnell`), sent
 * with its slash literal (`/v1/text-to-image/black-forest-labs/FLUX.1-schnell`).
 *
 * @example
 * ```ts
 * const client = new HybridClient({ baseUrl: "http://localhost:8080", apiKey: process.env.KEY });
 * const out = await client.remoteDecode("sd-v1-tiny", {
 *   tensor: { data: latents, shape: [1, 4, 64, 64] },
 *   scalingFactor: 0.18215,
 * });
 * if (out.kind === "image") await writeFile("out.jpg", out.bytes);
 * ```
 */
export class HybridClient {
  /** The job API: submit without waiting, then get, stream, wait, cancel, result, list. */
  readonly jobs: Jobs;
  private readonly transport: Transport;

  constructor(options: ClientOptions) {
    this.transport = new Transport(options);
    this.jobs = new Jobs(this.transport);
  }

  /**
   * Decodes latents (`POST /v1/vae/{model}/decode`), sending exactly what diffusers'
   * `remote_decode` sends. The answer follows from `outputType` and the model: an image
   * (`pil`, image models), a tensor (`pt`, or `pil` frames of video models) or a video (`mp4`).
   */
  async remoteDecode(model: string, params: DecodeParams, options: CallOptions = {}): Promise<DecodeResult> {
    return readDecode(await this.call(prepareDecode(model, params), options));
  }

  /**
   * Encodes an image file (PNG, JPEG, WebP) or an image tensor `[B, 3, H, W]` in [-1, 1] into
   * latents (`POST /v1/vae/{model}/encode`), as diffusers' `remote_encode` does.
   */
  async remoteEncode(
    model: string,
    image: EncodeInput,
    params: EncodeParams = {},
    options: CallOptions = {},
  ): Promise<EncodeResult> {
    return readEncode(await this.call(prepareEncode(model, image, params), options));
  }

  /** Generates an image from a prompt (`POST /v1/text-to-image/{model}`). */
  async textToImage(
    model: string,
    params: TextToImageParams,
    options: GenerateCallOptions = {},
  ): Promise<GenerateResult> {
    return readGenerate(
      await this.call(prepareTextToImage(model, params), options, generateHeaders(options)),
    );
  }

  /** Generates an image from an image and a prompt (`POST /v1/image-to-image/{model}`). */
  async imageToImage(
    model: string,
    params: ImageToImageParams,
    options: GenerateCallOptions = {},
  ): Promise<GenerateResult> {
    return readGenerate(
      await this.call(prepareImageToImage(model, params), options, generateHeaders(options)),
    );
  }

  /** The models live workers serve now (`GET /v1/models`; with keys on, the key's models). */
  async models(options: { signal?: AbortSignal } = {}): Promise<ModelEntry[]> {
    const list = await this.transport.json<ModelList>(
      { method: "GET", path: "/v1/models", headers: {} },
      options.signal,
    );
    return list.data;
  }

  private call(req: PreparedRequest, options: CallOptions, extra: Record<string, string> = {}) {
    return this.transport.send(
      { ...req, headers: { ...req.headers, ...extra, ...callHeaders(options) } },
      options.signal,
    );
  }
}
