import { randomUUID } from "node:crypto";
import {
  AppError,
  type DecodeJob,
  DecodeQuery,
  decodeOutputFor,
  type EncodeJob,
  EncodeQuery,
  type InputDType,
  type JobResult,
  type ModelInfo,
  parseOrThrow,
  planDecode,
  planEncodeTensor,
  scalingFor,
  sniffImageFormat,
  type TensorLimits,
  type VaeJob,
} from "@hybrid/protocol";
import type { JobProducer, PayloadStore, WorkerDirectory } from "@hybrid/queue";
import express, { type Express, type Request, type Response } from "express";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { pinoHttp } from "pino-http";
import { errorHandler, notFound } from "./errors.ts";

export interface AppDeps {
  redis: Redis;
  store: PayloadStore;
  producer: JobProducer;
  directory: WorkerDirectory;
  logger: Logger;
  limits: TensorLimits;
  /** ms a sync request waits for its job. */
  requestTimeoutMs: number;
  maxBodyBytes: number;
}

/** Builds the HTTP app (no listen): routes parse with protocol schemas, enqueue, wait, stream back. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("query parser", "simple");
  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req) => (req.headers["x-request-id"] as string) || randomUUID(),
    }),
  );

  // Any content type: diffusers sends `tensor/binary` for latents and nothing at all for images.
  const rawBody = express.raw({ type: () => true, limit: deps.maxBodyBytes });

  const model = async (id: string): Promise<ModelInfo> => {
    const m = (await deps.directory.models()).get(id);
    if (m) return m;
    // The cache may be a second old: a worker that just started should not get a 404.
    const fresh = (await deps.directory.models(true)).get(id);
    if (!fresh)
      throw new AppError(
        "unknown_model",
        `Model ${id} is not served by any worker. GET /v1/models lists the models.`,
      );
    return fresh;
  };

  const bodyOf = (req: Request): Buffer => {
    const body = req.body as unknown;
    if (!Buffer.isBuffer(body) || body.length === 0)
      throw new AppError("empty_body", "The request body is empty.");
    return body;
  };

  /** Stores the payload, enqueues the job, waits, and writes the answer bytes. */
  async function runJob(
    res: Response,
    body: Buffer,
    job: Omit<DecodeJob, "input"> | Omit<EncodeJob, "input">,
  ) {
    const input = await deps.store.put(body);
    const jobId = randomUUID();
    res.setHeader("x-job-id", jobId);
    let result: JobResult | undefined;
    try {
      const queued = await deps.producer.enqueue({ ...job, input } as VaeJob, jobId);
      // A client that hangs up leaves nobody to answer: withdraw the job if no worker has it
      // yet, and stop waiting for it.
      const hungUp = new Promise<never>((_, reject) => {
        res.on("close", () => {
          if (res.writableEnded) return;
          void queued.remove().catch(() => {});
          reject(
            new AppError("invalid_request", "The client closed the connection before the answer was ready."),
          );
        });
      });
      hungUp.catch(() => {});
      result = await Promise.race([deps.producer.waitForResult(queued, deps.requestTimeoutMs), hungUp]);
      const bytes = await deps.store.get(result.result);
      if (!bytes) throw new AppError("payload_expired", "The job's result expired before it could be sent.");
      res.status(200).setHeader("Content-Type", result.contentType);
      if (result.shape) res.setHeader("shape", `[${result.shape.join(", ")}]`);
      if (result.dtype) res.setHeader("dtype", result.dtype);
      res.setHeader("Content-Length", bytes.length);
      res.end(bytes);
    } catch (e) {
      if (e instanceof AppError && e.code === "timeout") {
        throw new AppError("timeout", `${e.message} It may still finish; job id ${jobId}.`, {
          details: { job_id: jobId },
        });
      }
      throw e;
    } finally {
      await deps.store.delete(input, ...(result ? [result.result] : [])).catch(() => {});
    }
  }

  app.post("/v1/vae/:model/decode", rawBody, async (req, res) => {
    const q = parseOrThrow(DecodeQuery, req.query);
    const m = await model(req.params.model as string);
    const body = bodyOf(req);
    const packed =
      q.height !== undefined && q.width !== undefined ? { height: q.height, width: q.width } : null;
    planDecode({ shape: q.shape, dtype: q.dtype, byteLength: body.length, packed }, m, deps.limits);
    const output = decodeOutputFor(q, req.headers.accept, m);
    await runJob(res, body, {
      kind: "decode",
      model: m.id,
      shape: q.shape,
      dtype: q.dtype,
      scaling: scalingFor(q, m),
      packed: q.shape.length === 3 ? packed : null,
      output,
    });
  });

  app.post("/v1/vae/:model/encode", rawBody, async (req, res) => {
    const q = parseOrThrow(EncodeQuery, req.query);
    const m = await model(req.params.model as string);
    if (!m.operations.includes("encode"))
      throw new AppError("unsupported_operation", `Model ${m.id} has no encoder.`);
    const body = bodyOf(req);
    let tensor: { shape: number[]; dtype: InputDType } | null = null;
    if (q.shape) {
      tensor = { shape: q.shape, dtype: q.dtype ?? "float32" };
      planEncodeTensor({ ...tensor, byteLength: body.length }, m, deps.limits);
    } else if (!sniffImageFormat(body)) {
      throw new AppError(
        "invalid_image",
        "The body is neither a PNG, JPEG or WebP image nor a tensor (send shape and dtype query parameters with a raw tensor).",
      );
    }
    // Scaling is the inverse of decode's: (latents - shift) * scale.
    const scaling = scalingFor(q, m);
    await runJob(res, body, {
      kind: "encode",
      model: m.id,
      tensor,
      scaling,
      sample: q.sample,
      seed: q.seed ?? null,
      outputDtype: tensor?.dtype ?? "float32",
    });
  });

  app.get("/v1/models", async (_req, res) => {
    const models = [...(await deps.directory.models(true)).values()].sort((a, b) => a.id.localeCompare(b.id));
    res.json({
      object: "list",
      data: models.map((m) => ({
        ...m,
        endpoints: Object.fromEntries(
          m.operations.map((op) => [op, `/v1/vae/${encodeURIComponent(m.id)}/${op}`]),
        ),
      })),
    });
  });

  app.get("/health/live", (_req, res) => {
    res.json({ status: "ok" });
  });

  app.get("/health/ready", async (_req, res) => {
    const redisOk = await deps.redis.ping().then(
      (r) => r === "PONG",
      () => false,
    );
    if (!redisOk) throw new AppError("unavailable", "Redis is not reachable.");
    const workers = await deps.directory.list(true);
    const models = new Set(workers.flatMap((w) => w.models.map((m) => m.id)));
    if (workers.length === 0 || models.size === 0)
      throw new AppError("no_workers", "No worker is serving any model yet.");
    res.json({ status: "ready", workers: workers.length, models: [...models].sort() });
  });

  app.all("/v1/vae/:model/:op", (req, _res, next) => {
    next(
      ["decode", "encode"].includes(req.params.op as string)
        ? new AppError("method_not_allowed", `Use POST for /v1/vae/{model}/${req.params.op}.`)
        : undefined,
    );
  });
  app.use(notFound);
  app.use(errorHandler);
  return app;
}
