import { createHash, randomUUID } from "node:crypto";
import {
  AppError,
  type JobData,
  type JobObject,
  type JobResult,
  jobObjectOf,
  WebhookEventFilter,
  type WebhookSpec,
} from "@hybrid/protocol";
import type {
  JobMeta,
  JobProducer,
  JobStore,
  PayloadStore,
  PendingReply,
  RedisMemoryGauge,
} from "@hybrid/queue";
import type { Request, Response } from "express";
import { type AnswerForm, storedAnswer, writeAnswer } from "./answer.ts";
import { type Principal, principalOf } from "./auth.ts";
import { MEMORY_RETRY_AFTER_SECONDS } from "./errors.ts";
import { hungUp } from "./hang-up.ts";
import { parsePrefer } from "./prefer.ts";
import type { KeyRateLimiter } from "./rate-limit.ts";
import type { WebhookResolver } from "./webhook-dns.ts";
import { checkWebhookUrl } from "./webhook-guard.ts";

export interface SubmitDeps {
  store: PayloadStore;
  jobs: JobStore;
  producer: JobProducer;
  limiter: KeyRateLimiter;
  /** ms a request without `Prefer` waits for its job before 504. */
  requestTimeoutMs: number;
  /** Jobs waiting in one queue beyond which submissions get 429. */
  maxBacklog: number;
  /** Redis' memory use, sampled: at its high-water mark submissions get 503 (null: never). */
  memory?: RedisMemoryGauge | null;
  idempotencyTtlSeconds: number;
  webhookAllowedHosts: readonly string[];
  /** Resolves webhook hosts (c-ares, capped per key and overall). @defaultValue the system's nameservers */
  webhookResolver?: WebhookResolver;
  /** Whether deliveries for this principal can be signed (a key's secret, or WEBHOOK_SECRET). */
  canSignWebhooks: (p: Principal) => boolean;
  /**
   * Aborts when the API shuts down: connections it closes then are not clients hanging up, so
   * their jobs go on (and stay fetchable) instead of being canceled.
   */
  stopping: AbortSignal;
}

/** Job data before its payload is stored: what a route hands to {@link submitJob}. */
export type JobRequest = JobData extends infer T ? (T extends JobData ? Omit<T, "input"> : never) : never;

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * The one submit path of every inference endpoint: limits, idempotency, payload, record,
 * enqueue — then the answer the client asked for with `Prefer`: the result (sync, the default,
 * exactly what HF clients expect), 202 with the job (`respond-async`), or the result if it is
 * ready within `wait=N` seconds and 202 otherwise.
 */
export async function submitJob(
  deps: SubmitDeps,
  req: Request,
  res: Response,
  data: JobRequest,
  body: Buffer | null,
  opts: {
    webhook?: { url: string; events?: string[] | null } | null;
    /** Called with a synchronous answer once it is sent (the result cache fills itself here). */
    onAnswered?: (result: JobResult, bytes: Buffer) => Promise<void>;
    /**
     * The most bytes the answer will take in Redis, reserved in the memory budget with the input:
     * a worker writes it after admission, and admissions between two samples of Redis' memory
     * must not add up past the mark.
     */
    resultBytes?: number;
  } = {},
): Promise<void> {
  const t0 = performance.now();
  const principal = principalOf(res);
  // A webhook's host lookup is work a key could otherwise ask for without limit: its request
  // counts against the key's rate before the lookup (and then not again when it is admitted).
  const countedEarly =
    principal.key !== null && (Boolean(opts.webhook) || req.headers["x-webhook-url"] !== undefined);
  const webhook = opts.webhook
    ? await checkedWebhook(deps, principal, opts.webhook.url, opts.webhook.events ?? [], "webhook")
    : await webhookOf(req, deps, principal);
  const prefer = parsePrefer(req.headers.prefer);

  const idemHeader = req.headers["idempotency-key"];
  const idemKey = typeof idemHeader === "string" ? idemHeader.trim() : undefined;
  if (idemKey !== undefined && !IDEMPOTENCY_KEY.test(idemKey))
    throw new AppError("invalid_parameter", "Idempotency-Key must be 1 to 255 visible ASCII characters.");

  const queue = deps.producer.queueOf(data);
  // Who follows the job decides what it writes (see JobMeta.logged): a plain sync request reads
  // only its answer; async and `wait=N` clients may stream or poll, a webhook wants events.
  const waits = !(prefer.async && prefer.waitSeconds === null);
  const plainSync = !prefer.async && prefer.waitSeconds === null;
  let jobId: string = randomUUID();
  let meta: JobMeta | undefined;
  let joined = false;
  // A client gone during the checks above gets no job: nobody would learn its id. With an
  // Idempotency-Key it may come back for it, so the job is made (or joined) as asked.
  if (!idemKey && res.destroyed) throw hungUp();
  if (idemKey) {
    const fingerprint = fingerprintOf(req, body ?? Buffer.alloc(0));
    const prior = await deps.jobs.idempotency.claim(
      principal.owner,
      idemKey,
      { jobId, fingerprint },
      deps.idempotencyTtlSeconds,
    );
    if (prior && prior.fingerprint !== fingerprint)
      throw new AppError(
        "idempotency_conflict",
        "This Idempotency-Key was used for a different request; use a new key for a new request.",
        { details: { job_id: prior.jobId } },
      );
    if (prior) {
      jobId = prior.jobId;
      meta = await existingJob(deps, prior.jobId);
      joined = true;
    }
  }
  // Listening before the job can run: a fast worker's reply must not pass unheard.
  const pending = waits ? deps.producer.expect(jobId) : undefined;
  try {
    if (!meta) {
      // A `wait=N` answer and an idempotent one stay fetchable after they are sent.
      const reply = waits
        ? { api: deps.producer.replyTo, keep: prefer.waitSeconds !== null || idemKey !== undefined }
        : undefined;
      meta = await createJob(deps, principal, queue, jobId, { ...data, ...(reply ? { reply } : {}) }, body, {
        webhook,
        logged: !plainSync || webhook !== null,
        imageAsJson: data.kind === "generate" && data.response === "json",
        counted: countedEarly,
        resultBytes: opts.resultBytes ?? 0,
      });
    }
  } catch (e) {
    pending?.stop();
    if (idemKey && !joined) await deps.jobs.idempotency.release(principal.owner, idemKey).catch(() => {});
    throw e;
  }
  res.setHeader("x-job-id", jobId);
  if (!pending) {
    res.setHeader("Preference-Applied", "respond-async");
    return accepted(deps, res, jobId);
  }
  const form = { imageAsJson: meta.imageAsJson };
  try {
    if (prefer.waitSeconds !== null) {
      const waitMs = Math.min(prefer.waitSeconds * 1000, deps.requestTimeoutMs);
      res.setHeader("Preference-Applied", `wait=${Math.floor(waitMs / 1000)}`);
      const answer = await deps.producer.answer(pending, jobId, queue, waitMs, joined).catch((e: unknown) => {
        if (e instanceof AppError && e.code === "timeout") return null;
        throw e;
      });
      if (!answer) return accepted(deps, res, jobId);
      return writeAnswer(
        res,
        answer.result,
        answer.bytes ?? (await storedAnswer(deps.store, answer.result)),
        form,
      );
    }
    await answerSync(deps, res, { pending, meta, joined, idemKey, t0, form }, opts.onAnswered);
  } finally {
    pending.stop();
  }
}

/**
 * A synchronous answer: a client that hangs up leaves nobody to answer, so its job is canceled
 * (withdrawn if waiting, its result discarded if running) — unless an Idempotency-Key says the
 * client means to come back for it.
 */
async function answerSync(
  deps: SubmitDeps,
  res: Response,
  w: {
    pending: PendingReply;
    meta: JobMeta;
    joined: boolean;
    idemKey: string | undefined;
    t0: number;
    form: AnswerForm;
  },
  onAnswered: ((result: JobResult, bytes: Buffer) => Promise<void>) | undefined,
): Promise<void> {
  const { meta, idemKey } = w;
  const gone = new Promise<never>((_, reject) => {
    const onClose = () => {
      if (res.writableEnded) return;
      if (!idemKey && !deps.stopping.aborted) void deps.jobs.cancel(meta).catch(() => {});
      reject(hungUp());
    };
    // A client that left while the job was being created closed before this listener existed.
    if (res.destroyed) onClose();
    else res.on("close", onClose);
  });
  gone.catch(() => {});
  const queued = performance.now();
  const { result, bytes: inline } = await Promise.race([
    deps.producer.answer(w.pending, meta.id, meta.queue, deps.requestTimeoutMs, w.joined),
    gone,
  ]);
  const finished = performance.now();
  const bytes = inline ?? (await storedAnswer(deps.store, result));
  const arrivedAt = typeof res.locals.arrivedAt === "number" ? res.locals.arrivedAt : w.t0;
  res.setHeader(
    "Server-Timing",
    serverTiming(result, w.t0 - arrivedAt, queued - w.t0, finished - queued, performance.now() - finished),
  );
  writeAnswer(res, result, bytes, w.form);
  await onAnswered?.(result, bytes).catch(() => {});
  // Delivered: nobody will read it again (a 504'd job's result stays for /v1/jobs/{id}/result).
  // An inline answer was never stored; a kept one stays (see reply-channel.ts).
  if (!idemKey && !inline) await deps.store.delete(result.result).catch(() => {});
}

/**
 * A sync answer's `Server-Timing` (shown by browsers' dev tools; the benchmark prints it):
 * `receive` (the body read, middleware and the request's validation), `admit` (checks, input
 * stored, job added), `queue` (until a worker started the job, by the worker's clock), `deliver`
 * (the rest of the wait not spent on the worker's work: mostly its answer reaching this API),
 * the worker's `read`,
 * `model`, `post` (pre/postprocessing and encoding) and `write`, then `fetch` (reading the answer).
 */
export function serverTiming(
  result: JobResult,
  receiveMs: number,
  admitMs: number,
  waitMs: number,
  fetchMs: number,
): string {
  const t = result.timings;
  const parts: [string, number][] = [
    ["receive", receiveMs],
    ["admit", admitMs],
  ];
  if (t) {
    const work = t.readMs + t.runMs + t.writeMs;
    const queue = Math.min(t.queueMs ?? 0, Math.max(0, waitMs - work));
    parts.push(["queue", queue], ["deliver", Math.max(0, waitMs - work - queue)], ["read", t.readMs]);
    if (t.modelMs !== undefined) parts.push(["model", t.modelMs], ["post", Math.max(0, t.runMs - t.modelMs)]);
    else parts.push(["run", t.runMs]);
    parts.push(["write", t.writeMs]);
  } else parts.push(["wait", waitMs]);
  parts.push(["fetch", fetchMs]);
  return parts.map(([name, ms]) => `${name};dur=${ms.toFixed(2)}`).join(", ");
}

async function accepted(deps: SubmitDeps, res: Response, jobId: string): Promise<void> {
  const view = await deps.jobs.views.describe(jobId);
  if (!view) throw new AppError("internal", "The job vanished right after it was created.");
  const object: JobObject = jobObjectOf(view);
  res.status(202).setHeader("Location", object.urls.self);
  res.json(object);
}

/** Admission, payload, record, `queued` event, enqueue — in that order, so no reader misses a step. */
async function createJob(
  deps: SubmitDeps,
  principal: Principal,
  queue: string,
  jobId: string,
  data: JobRequest,
  body: Buffer | null,
  record: Pick<JobMeta, "webhook" | "logged" | "imageAsJson"> & { counted?: boolean; resultBytes?: number },
): Promise<JobMeta> {
  const { counted, resultBytes = 0, ...fields } = record;
  // Before Redis is full, not when it refuses a write: then admitted jobs could not store results.
  // The answer a worker will write counts as well as the input written now.
  const bytes = (body?.length ?? 0) + resultBytes;
  if (deps.memory?.full(bytes))
    throw new AppError("overloaded", "The service is short of memory for new work; try again later.", {
      status: 503,
      retryAfterSeconds: MEMORY_RETRY_AFTER_SECONDS,
    });
  deps.memory?.note(bytes);
  const cap = principal.key?.max_queued;
  const meta: JobMeta = {
    id: jobId,
    kind: data.kind,
    model: data.model,
    queue,
    owner: principal.owner,
    createdAt: Date.now(),
    canceledAt: null,
    capped: Boolean(cap),
    ...fields,
  };
  // Each limit is counted and reserved in one script (parallel submissions cannot all pass one
  // count), the key's own first: a key at its cap holds no place in the shared backlog. What was
  // reserved is given back if the job is not added.
  const undo: (() => Promise<unknown>)[] = [];
  try {
    if (cap) {
      const active = await deps.jobs.caps.reserve(meta, cap);
      if (active !== null)
        throw new AppError(
          "too_many_queued",
          `This API key already has ${active} unfinished jobs (its limit is ${cap}); wait for some to finish.`,
          { retryAfterSeconds: await deps.producer.secondsToDrain(queue, 1) },
        );
      undo.push(() => deps.jobs.records.discard(meta));
    }
    const { admitted, waiting } = await deps.producer.admit(queue, jobId, deps.maxBacklog);
    if (!admitted)
      throw new AppError(
        "overloaded",
        `The ${queue} queue is full (${waiting} jobs waiting); try again later.`,
        {
          retryAfterSeconds: await deps.producer.secondsToDrain(queue, waiting - deps.maxBacklog + 1),
        },
      );
    undo.push(() => deps.producer.release(queue, jobId));
    // Only work that is admitted counts toward the key's rate (a replay, a 4xx or a 429 does not),
    // except a webhook submission, counted before its host lookup (see submitJob).
    if (principal.key && !counted) await deps.limiter.consume(principal.key);
    return await recordAndEnqueue(deps, meta, data, body);
  } catch (e) {
    await Promise.all(undo.map((f) => f().catch(() => {})));
    throw e;
  }
}

/** The rest of {@link createJob} once the job is admitted. */
async function recordAndEnqueue(
  deps: SubmitDeps,
  meta: JobMeta,
  data: JobRequest,
  body: Buffer | null,
): Promise<JobMeta> {
  // The input and the record are independent writes: one round trip for both. The job itself is
  // added only after both, so no worker or reader sees it without them.
  const [stored, recorded] = await Promise.allSettled([
    body ? deps.store.put(body) : Promise.resolve(null),
    deps.jobs.create(meta, meta.capped),
  ]);
  const input = stored.status === "fulfilled" ? stored.value : null;
  if (stored.status === "rejected" || recorded.status === "rejected") {
    // A failed create undid itself (a capped job's indexes included).
    if (recorded.status === "fulfilled") await deps.jobs.records.discard(meta).catch(() => {});
    if (input) await deps.store.delete(input).catch(() => {});
    throw stored.status === "rejected" ? stored.reason : (recorded as PromiseRejectedResult).reason;
  }
  try {
    await deps.producer.enqueue({ ...data, input } as JobData, meta.id);
    return meta;
  } catch (e) {
    await deps.jobs.records.discard(meta).catch(() => {});
    if (input) await deps.store.delete(input).catch(() => {});
    throw e;
  }
}

/** The job an idempotent retry points at; its creator may still be adding it. */
async function existingJob(deps: SubmitDeps, jobId: string): Promise<JobMeta> {
  for (let i = 0; i < 40; i++) {
    const meta = await deps.jobs.records.get(jobId);
    if (meta && (await deps.jobs.views.enqueued(meta))) return meta;
    if (meta?.canceledAt)
      throw new AppError("canceled", `Job ${jobId} of this Idempotency-Key was canceled.`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new AppError("payload_expired", `Job ${jobId} of this Idempotency-Key is no longer available.`);
}

/**
 * A request's path with each segment percent-decoded, so both spellings of a Hub-style model id
 * (`/v1/vae/owner/name/decode` and `/v1/vae/owner%2Fname/decode`, one model) are one request; a
 * segment that does not decode stays as sent.
 */
function decodedPath(path: string): string {
  if (!path.includes("%")) return path;
  return path
    .split("/")
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        return segment;
      }
    })
    .join("/");
}

/** What makes two submissions "the same request" for Idempotency-Key. */
function fingerprintOf(req: Request, body: Buffer): string {
  const h = createHash("sha256");
  for (const part of [
    req.method,
    decodedPath(req.path),
    JSON.stringify(Object.entries(req.query).sort(([a], [b]) => a.localeCompare(b))),
    String(req.headers["content-type"] ?? ""),
    String(req.headers.accept ?? ""),
    String(req.headers["x-webhook-url"] ?? ""),
    String(req.headers["x-webhook-events"] ?? ""),
  ])
    h.update(part).update("\0");
  return h.update(body).digest("hex");
}

/** `X-Webhook-Url` (+ `X-Webhook-Events`, comma-separated: start, progress, completed). */
async function webhookOf(req: Request, deps: SubmitDeps, principal: Principal): Promise<WebhookSpec | null> {
  const url = req.headers["x-webhook-url"];
  if (url === undefined) return null;
  if (typeof url !== "string" || url.trim() === "")
    throw new AppError("invalid_webhook", "X-Webhook-Url must be one absolute http(s) URL.");
  const raw = req.headers["x-webhook-events"];
  const names =
    typeof raw === "string"
      ? raw
          .split(",")
          .map((s) => s.trim().toLowerCase())
          .filter(Boolean)
      : [];
  return checkedWebhook(deps, principal, url.trim(), names, "X-Webhook-Events");
}

/** A webhook spec after every check: known events, a secret to sign with, a host we may call. */
async function checkedWebhook(
  deps: SubmitDeps,
  principal: Principal,
  url: string,
  names: readonly string[],
  eventsField: string,
): Promise<WebhookSpec> {
  const events = names.length > 0 ? names : ["completed"];
  const parsed = WebhookEventFilter.array().safeParse(events);
  if (!parsed.success)
    throw new AppError(
      "invalid_webhook",
      `${eventsField} must list some of start, progress, completed; got "${names.join(",")}".`,
    );
  if (!deps.canSignWebhooks(principal))
    throw new AppError(
      "invalid_webhook",
      "Webhooks are off: this service has no WEBHOOK_SECRET to sign them with (or API keys).",
    );
  if (principal.key) await deps.limiter.consume(principal.key);
  const checked = await checkWebhookUrl(url, deps.webhookAllowedHosts, {
    ...(deps.webhookResolver ? { resolver: deps.webhookResolver } : {}),
    owner: principal.owner,
  });
  return { url: checked.href, events: [...new Set(parsed.data)] };
}
