import {
  AppError,
  checkDecodeOutput,
  checkQuerySizes,
  DecodeQuery,
  decodeOutputFor,
  EncodeQuery,
  type InputDType,
  missingShape,
  parseOrThrow,
  planDecode,
  planEncodeTensor,
  scalingFor,
  sniffImageFormat,
  type TensorLimits,
} from "@hybrid/protocol";
import express, { type Request, type RequestHandler, type Response, Router } from "express";
import { type SubmitDeps, submitJob } from "../job-submit.ts";
import type { ModelLookupDeps } from "../model-lookup.ts";
import { modelPaths, requestedModel } from "../requested-model.ts";

export interface VaeRouteDeps extends SubmitDeps, ModelLookupDeps {
  limits: TensorLimits;
  /** Largest body of the binary routes (latents, images): MAX_BODY_BYTES. */
  maxBodyBytes: number;
}

/**
 * The raw body, up to `limit` bytes: a larger one is refused with 413 naming the limit and its
 * setting, from its Content-Length before a byte of it is read when the client sends one.
 */
export function rawBodyUpTo(limit: number, setting: string, what: string): RequestHandler {
  // Any content type: diffusers sends `tensor/binary` for latents and nothing at all for images.
  const parse = express.raw({ type: () => true, limit });
  return (req, res, next) =>
    parse(req, res, (err?: unknown) => {
      if ((err as { type?: string } | undefined)?.type === "entity.too.large")
        return next(
          new AppError(
            "payload_too_large",
            `The body is larger than the ${limit} bytes ${what} takes (${setting}).`,
            { details: { limit: setting, max: limit } },
          ),
        );
      next(err);
    });
}

const bodyOf = (req: Request): Buffer => {
  const body = req.body as unknown;
  if (!Buffer.isBuffer(body) || body.length === 0)
    throw new AppError("empty_body", "The request body is empty.");
  return body;
};

/** The remote VAE endpoints (PROTOCOL §1–2): validate against the model, then submit a job. */
export function vaeRoutes(deps: VaeRouteDeps): Router {
  const router = Router();
  const rawBody = rawBodyUpTo(deps.maxBodyBytes, "MAX_BODY_BYTES", "a VAE request");

  const decode = async (req: Request, res: Response) => {
    // The model first: a request to an unknown model is `unknown_model` whatever its query.
    const m = await requestedModel(deps, req, res);
    // Read once: Express 5 parses the query string again on every read of req.query.
    const query = req.query;
    checkQuerySizes(query);
    if (query.shape === undefined) throw missingShape();
    const q = parseOrThrow(DecodeQuery, query);
    const body = bodyOf(req);
    const packed =
      q.height !== undefined && q.width !== undefined ? { height: q.height, width: q.width } : null;
    const plan = planDecode(
      { shape: q.shape, dtype: q.dtype, byteLength: body.length, packed },
      m,
      deps.limits,
    );
    const output = decodeOutputFor(q, req.headers.accept, m);
    // The whole answer against the per-job caps, before it is queued (the worker checks again).
    const resultBytes = checkDecodeOutput(plan, output, deps.limits);
    await submitJob(
      deps,
      req,
      res,
      {
        kind: "decode",
        model: m.id,
        shape: q.shape,
        dtype: q.dtype,
        scaling: scalingFor(q, m),
        packed: q.shape.length === 3 ? packed : null,
        output,
      },
      body,
      { resultBytes },
    );
  };

  const encode = async (req: Request, res: Response) => {
    const m = await requestedModel(deps, req, res);
    const query = req.query;
    checkQuerySizes(query);
    const q = parseOrThrow(EncodeQuery, query);
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
    await submitJob(
      deps,
      req,
      res,
      {
        kind: "encode",
        model: m.id,
        tensor,
        // Scaling is the inverse of decode's: (latents - shift) * scale.
        scaling: scalingFor(q, m),
        sample: q.sample,
        seed: q.seed ?? null,
        outputDtype: tensor?.dtype ?? "float32",
      },
      body,
    );
  };

  for (const path of modelPaths("/v1/vae", "/decode")) router.post(path, rawBody, decode);
  for (const path of modelPaths("/v1/vae", "/encode")) router.post(path, rawBody, encode);
  for (const path of modelPaths("/v1/vae", "/:op"))
    router.all(path, (req, _res, next) => {
      next(
        ["decode", "encode"].includes(req.params.op as string)
          ? new AppError("method_not_allowed", `Use POST for /v1/vae/{model}/${req.params.op}.`)
          : undefined,
      );
    });
  return router;
}
