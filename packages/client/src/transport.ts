import { type HeaderValues, modelIdPath, type SubmitHeaders } from "@hybrid/protocol";
import { errorOf } from "./errors.ts";

/** Options of a {@link HybridClient}. */
export interface ClientOptions {
  /** Where the service answers, e.g. `http://localhost:8080` (a path prefix is kept). */
  baseUrl: string;
  /** An API key of the service, sent as `Authorization: Bearer <key>`. Needed once keys are on. */
  apiKey?: string;
  /** The fetch to use (a proxy-aware one, a mock in tests). @defaultValue `globalThis.fetch` */
  fetch?: typeof fetch;
  /** Headers sent with every request. */
  headers?: Readonly<Record<string, string>>;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the request (and, for a synchronous call, cancels its job: the server sees the hang-up). */
  signal?: AbortSignal;
  /**
   * Makes retries safe: the same key with the same request is the same job (no new work) for 24 h,
   * and a synchronous call's result is kept for a retry. 1–255 visible ASCII characters.
   */
  idempotencyKey?: string;
  /**
   * Wait for a worker when the model's workers are restarting, instead of a 503 `model_loading`.
   * @defaultValue false
   */
  waitForModel?: boolean;
  /** More headers for this request. */
  headers?: Readonly<Record<string, string>>;
}

/** An HTTP request, built but not sent. */
export interface PreparedRequest {
  method: "GET" | "POST";
  /** Path below the base URL, with its query string. */
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array | string;
}

/** Headers of a call's {@link CallOptions}. */
export function callHeaders(options: CallOptions = {}): Record<string, string> {
  const headers: HeaderValues<SubmitHeaders> = {};
  if (options.idempotencyKey !== undefined) headers["Idempotency-Key"] = options.idempotencyKey;
  if (options.waitForModel !== undefined) headers["x-wait-for-model"] = String(options.waitForModel);
  return { ...headers, ...options.headers };
}

/** Path segments (job ids) are escaped, so an id can never reach another route. */
export const segment = (s: string): string => encodeURIComponent(s);

/**
 * A model id in a path: a short id is one escaped segment, a Hub-style `owner/name` two, with a
 * literal slash between them (`/v1/text-to-image/black-forest-labs/FLUX.1-schnell`), as the
 * Hub's own URLs read; each part escaped, so an id can never reach another route.
 */
export const modelSegments = (id: string): string => modelIdPath(id);

/** Sends requests to the service: base URL, authentication, and errors as {@link HybridError}. */
export class Transport {
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Record<string, string>;

  constructor(options: ClientOptions) {
    if (!options.baseUrl) throw new TypeError("baseUrl is required, e.g. http://localhost:8080");
    this.base = options.baseUrl.replace(/\/+$/, "");
    // Bound: a detached `window.fetch` throws "Illegal invocation" in browsers.
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.headers = { ...options.headers };
    if (options.apiKey) this.headers.Authorization = `Bearer ${options.apiKey}`;
  }

  /** Absolute URL of a path of the service. */
  url(path: string): string {
    return `${this.base}${path}`;
  }

  /** Sends a request; resolves with a 2xx response, rejects with a HybridError otherwise. */
  async send(req: PreparedRequest, signal?: AbortSignal): Promise<Response> {
    const init: RequestInit = { method: req.method, headers: { ...this.headers, ...req.headers } };
    // Any Uint8Array is a body at run time; the DOM typings admit only ArrayBuffer-backed ones.
    if (req.body !== undefined) init.body = req.body as NonNullable<RequestInit["body"]>;
    if (signal) init.signal = signal;
    const res = await this.fetchImpl(this.url(req.path), init);
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  /** Sends a request and parses its JSON answer. */
  async json<T>(req: PreparedRequest, signal?: AbortSignal): Promise<T> {
    const res = await this.send({ ...req, headers: { Accept: "application/json", ...req.headers } }, signal);
    return (await res.json()) as T;
  }
}
