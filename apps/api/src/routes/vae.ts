import {
  AppError,
  DecodeQuery,
  decodeOutputFor,
  EncodeQuery,
  type InputDType,
  type ModelInfo,
  parseOrThrow,
  planDecode,
  planEncodeTensor,
  scalingFor,
  sniffImageFormat,
  type TensorLimits,
} from "@hybrid/protocol";
import type { WorkerDirectory } from "@hybrid/queue";
import express, { type Request, Router } from "express";
import { assertModelAllowed } from "../auth.ts";
import { type SubmitDeps, submitJob } from "../job-submit.ts";

export interface VaeRouteDeps extends SubmitDeps {
  directory: WorkerDirectory;
  /** What a 503 `model_loading` tells clients to wait, in seconds. */
  modelLoadingSeconds: number;
  limits: TensorLimits;
  maxBodyBytes: number;
}

/**
 * Looks a model up in the worker directory. A model no worker serves is 404 `unknown_model`,
 * unless workers served it before (they are restarting): then 503 `model_loading` with an
 * `estimated_time`, or, with `x-wait-for-model: true`, a wait for a worker (up to the request timeout).
 */
export async function findModel(
  deps: Pick<VaeRouteDeps, "directory" | "modelLoadingSeconds" | "requestTimeoutMs">,
  id: string,
  req?: Request,
): Promise<ModelInfo> {
  const { directory } = deps;
  const m = (await directory.models()).get(id);
  if (m) return m;
  // The cache may be a second old: a worker that just started should not get a 404.
  const fresh = (await directory.models(true)).get(id);
  if (fresh) return fresh;
  if (!(await directory.known(id)))
    throw new AppError(
      "unknown_model",
      `Model ${id} is not served by any worker. GET /v1/models lists the models.`,
    );
  if (String(req?.headers["x-wait-for-model"] ?? "").toLowerCase() === "true") {
    const until = Date.now() + deps.requestTimeoutMs;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      const back = (await directory.models(true)).get(id);
      if (back) return back;
    }
  }
  throw new AppError("model_loading", `Model ${id} is currently loading`, {
    details: { estimated_time: deps.modelLoadingSeconds },
    retryAfterSeconds: deps.modelLoadingSeconds,
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
  // Any content type: diffusers sends `tensor/binary` for latents and nothing at all for images.
  const rawBody = express.raw({ type: () => true, limit: deps.maxBodyBytes });

  router.post("/v1/vae/:model/decode", rawBody, async (req, res) => {
    // The model first: a request to an unknown model is `unknown_model` whatever its query.
    const m = await findModel(deps, req.params.model as string, req);
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
    const m = await findModel(deps, req.params.model as string, req);
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
