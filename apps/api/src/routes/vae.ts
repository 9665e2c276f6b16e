import {
  AppError,
  DecodeQuery,
  decodeOutputFor,
  EncodeQuery,
  type InputDType,
  parseOrThrow,
  planDecode,
  planEncodeTensor,
  scalingFor,
  sniffImageFormat,
  type TensorLimits,
} from "@hybrid/protocol";
import express, { type Request, Router } from "express";
import { assertModelAllowed } from "../auth.ts";
import { type SubmitDeps, submitJob } from "../job-submit.ts";
import { findModel, type ModelLookupDeps, waitsForModel } from "../model-lookup.ts";

export interface VaeRouteDeps extends SubmitDeps, ModelLookupDeps {
  limits: TensorLimits;
  maxBodyBytes: number;
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
  // Any content type: diffusers sends `tensor/binary` for latents and nothing at all for images.
  const rawBody = express.raw({ type: () => true, limit: deps.maxBodyBytes });

  router.post("/v1/vae/:model/decode", rawBody, async (req, res) => {
    // The model first: a request to an unknown model is `unknown_model` whatever its query.
    const m = await findModel(
      deps,
      req.params.model as string,
      waitsForModel(req.headers),
      () => res.destroyed,
    );
    assertModelAllowed(res, m.id);
    const q = parseOrThrow(DecodeQuery, req.query);
    const body = bodyOf(req);
    const packed =
      q.height !== undefined && q.width !== undefined ? { height: q.height, width: q.width } : null;
    planDecode({ shape: q.shape, dtype: q.dtype, byteLength: body.length, packed }, m, deps.limits);
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
        output: decodeOutputFor(q, req.headers.accept, m),
      },
      body,
    );
  });

  router.post("/v1/vae/:model/encode", rawBody, async (req, res) => {
    const m = await findModel(
      deps,
      req.params.model as string,
      waitsForModel(req.headers),
      () => res.destroyed,
    );
    assertModelAllowed(res, m.id);
    const q = parseOrThrow(EncodeQuery, req.query);
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
  });

  router.all("/v1/vae/:model/:op", (req, _res, next) => {
    next(
      ["decode", "encode"].includes(req.params.op as string)
        ? new AppError("method_not_allowed", `Use POST for /v1/vae/{model}/${req.params.op}.`)
        : undefined,
    );
  });
  return router;
}
