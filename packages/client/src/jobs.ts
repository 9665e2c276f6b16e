import type { HeaderValues, JobList, JobObject, SubmitHeaders, WebhookEventFilter } from "@hybrid/protocol";
import { type DecodeParams, type DecodeResult, prepareDecode, readDecode } from "./decode.ts";
import {
  type EncodeInput,
  type EncodeParams,
  type EncodeResult,
  prepareEncode,
  readEncode,
} from "./encode.ts";
import {
  type GenerateResult,
  type ImageToImageParams,
  prepareImageToImage,
  prepareTextToImage,
  readGenerate,
  type TextToImageParams,
} from "./generate.ts";
import { Job, type JobApi } from "./job.ts";
import {
  followJobEvents,
  type JobEvent,
  type StreamOptions,
  type WaitOptions,
  waitForJob,
} from "./job-events.ts";
import { type JobOutput, readOutput } from "./output.ts";
import { type CallOptions, callHeaders, type PreparedRequest, segment, type Transport } from "./transport.ts";

export interface ListOptions {
  /** Jobs per page, 1–100. @defaultValue 20 */
  limit?: number;
  /** The `next_cursor` of the previous page. */
  cursor?: string;
  signal?: AbortSignal;
}

/** Options of a submitted (asynchronous) call. */
export interface SubmitOptions extends CallOptions {
  /** POST the job (signed, Standard Webhooks) to this URL at these events. */
  webhook?: {
    url: string;
    /** @defaultValue ["completed"] */
    events?: readonly WebhookEventFilter[];
  };
}

/**
 * The job API (`/v1/jobs`): submit work without waiting for it, then follow it by id — get,
 * stream, wait, cancel, fetch its result, list.
 */
export class Jobs implements JobApi {
  constructor(private readonly transport: Transport) {}

  /** Submits a decode (`remoteDecode`'s request) as a job. */
  submitDecode(model: string, params: DecodeParams, options?: SubmitOptions): Promise<Job<DecodeResult>> {
    return this.submit(prepareDecode(model, params), readDecode, options);
  }

  /** Submits an encode (`remoteEncode`'s request) as a job. */
  submitEncode(
    model: string,
    image: EncodeInput,
    params?: EncodeParams,
    options?: SubmitOptions,
  ): Promise<Job<EncodeResult>> {
    return this.submit(prepareEncode(model, image, params), readEncode, options);
  }

  /** Submits a text-to-image generation as a job. */
  submitTextToImage(
    model: string,
    params: TextToImageParams,
    options?: SubmitOptions,
  ): Promise<Job<GenerateResult>> {
    return this.submit(prepareTextToImage(model, params), readGenerate, options);
  }

  /** Submits an image-to-image generation as a job. */
  submitImageToImage(
    model: string,
    params: ImageToImageParams,
    options?: SubmitOptions,
  ): Promise<Job<GenerateResult>> {
    return this.submit(prepareImageToImage(model, params), readGenerate, options);
  }

  /** `Prefer: respond-async`: the server answers 202 with the job at once. */
  private async submit<T>(
    req: PreparedRequest,
    read: (res: Response) => Promise<T>,
    options: SubmitOptions = {},
  ): Promise<Job<T>> {
    const submit: HeaderValues<SubmitHeaders> = { Prefer: "respond-async" };
    if (options.webhook) {
      submit["X-Webhook-Url"] = options.webhook.url;
      if (options.webhook.events) submit["X-Webhook-Events"] = options.webhook.events.join(",");
    }
    const res = await this.transport.send(
      { ...req, headers: { ...req.headers, ...submit, ...callHeaders(options) } },
      options.signal,
    );
    const job = (await res.json()) as JobObject;
    return new Job(this, job, read);
  }

  /** The job now (`GET /v1/jobs/{id}`); 404 `not_found` once expired or for another key's job. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<JobObject> {
    return this.transport.json<JobObject>(
      { method: "GET", path: `/v1/jobs/${segment(id)}`, headers: {} },
      options.signal,
    );
  }

  /** A page of the caller's jobs, newest first. */
  list(options: ListOptions = {}): Promise<JobList> {
    const q = new URLSearchParams();
    if (options.limit !== undefined) q.set("limit", String(options.limit));
    if (options.cursor !== undefined) q.set("cursor", options.cursor);
    const query = q.toString();
    return this.transport.json<JobList>(
      { method: "GET", path: `/v1/jobs${query ? `?${query}` : ""}`, headers: {} },
      options.signal,
    );
  }

  /** Asks the job to stop: 202 (canceled, or on its way to the worker) or 200 (already ended). */
  cancel(id: string, options: { signal?: AbortSignal } = {}): Promise<JobObject> {
    return this.transport.json<JobObject>(
      { method: "POST", path: `/v1/jobs/${segment(id)}/cancel`, headers: {} },
      options.signal,
    );
  }

  /**
   * The job's result, told apart by `kind` from its headers (a job handle's `result()` is typed
   * for its request instead). Errors as {@link Job.result}.
   */
  async result(id: string, options: { signal?: AbortSignal } = {}): Promise<JobOutput> {
    return readOutput(await this.resultResponse(id, options));
  }

  /** @internal The raw 2xx answer of `GET /v1/jobs/{id}/result`. */
  resultResponse(id: string, options: { signal?: AbortSignal } = {}): Promise<Response> {
    return this.transport.send(
      { method: "GET", path: `/v1/jobs/${segment(id)}/result`, headers: { Accept: "*/*" } },
      options.signal,
    );
  }

  /**
   * The job's events as they happen (`GET /v1/jobs/{id}/events`): the log so far, then live
   * ones, ending after the terminal event. A dropped connection is resumed after the last
   * event seen (`Last-Event-ID`), so no event is missed or repeated. Stop early with `break`
   * or the signal.
   */
  stream(id: string, options: StreamOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
    return followJobEvents(this.transport, id, options);
  }

  /**
   * Resolves with the job once it has ended (`succeeded`, `failed` or `canceled`: check
   * `status`), following its event stream. Rejects with the signal's reason when aborted, or a
   * `TimeoutError` after `timeoutMs`; the job itself goes on either way.
   */
  wait(id: string, options: WaitOptions = {}): Promise<JobObject> {
    return waitForJob(this.transport, id, options);
  }
}
