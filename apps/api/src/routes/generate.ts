import { createHash, randomInt } from "node:crypto";
import {
  AppError,
  checkGenerateJson,
  checkJobOutput,
  GenerateBody,
  type GenerateLimits,
  type GenerateParams,
  type GenerateResponse,
  headerFlag,
  isHandlerStyle,
  type JobResult,
  parametersOf,
  parseOrThrow,
  resolveGenerate,
  sniffImageFormat,
} from "@hybrid/protocol";
import type { ResultCache } from "@hybrid/queue";
import { type Request, type Response, Router } from "express";
import { writeAnswer } from "../answer.ts";
import { principalOf } from "../auth.ts";
import { submitJob } from "../job-submit.ts";
import { modelPaths, requestedModel } from "../requested-model.ts";
import { rawBodyUpTo, type VaeRouteDeps } from "./vae.ts";

export interface GenerateRouteDeps extends VaeRouteDeps {
  generateLimits: GenerateLimits;
  /**
   * Largest JSON body without an image (MAX_JSON_BODY_BYTES): the text-to-image route's body
   * limit, and what a JSON body on the routes that may carry an image (image-to-image, the HF
   * path) may weigh when it turns out to hold none. @defaultValue 256 KiB
   */
  maxJsonBodyBytes?: number;
  /** Answers of seeded generations (`x-use-cache`); null turns the cache off. */
  cache: ResultCache | null;
}

type Task = GenerateParams["task"];

/** MAX_JSON_BODY_BYTES' default (apps/api/src/env.ts). */
const DEFAULT_MAX_JSON_BODY_BYTES = 256 * 1024;

/** What makes two generations the same: the job data and the init image's bytes. */
function requestHash(data: object, image: Buffer | null): string {
  const h = createHash("sha256").update(JSON.stringify(data)).update("\0");
  if (image) h.update(image);
  return h.digest("hex");
}

/** Base64 image in JSON `inputs` (a data URL prefix is tolerated), or null when it is not one. */
function base64Image(inputs: string): Buffer | null {
  const b64 = inputs.replace(/^data:image\/[a-z+.-]+;base64,/i, "");
  if (b64.length < 16 || !/^[A-Za-z0-9+/=\s_-]+$/.test(b64.slice(0, 4096))) return null;
  const bytes = Buffer.from(b64, "base64");
  return sniffImageFormat(bytes) ? bytes : null;
}

/**
 * Text-to-image and image-to-image (PROTOCOL §3–4): the custom-handler JSON, the HF task JSON
 * (`parameters`, `target_size`), and a bare image body; answered as image bytes or as
 * `{"image": "<base64>"}` per the client's shape and Accept header. `POST /models/{model}` (the HF
 * Inference API shape) picks the task from the body.
 */
export function generateRoutes(deps: GenerateRouteDeps): Router {
  const router = Router();
  const maxJson = deps.maxJsonBodyBytes ?? DEFAULT_MAX_JSON_BODY_BYTES;
  // Text-to-image takes JSON only: a small body. The routes that may carry an image take the
  // binary limit, and a JSON body among them that holds no image is held to maxJson below.
  const jsonOnly = rawBodyUpTo(maxJson, "MAX_JSON_BODY_BYTES", "text-to-image");
  const withImage = rawBodyUpTo(deps.maxBodyBytes, "MAX_BODY_BYTES", "a generation with an image");

  async function handle(req: Request, res: Response, asked: Task | "auto") {
    const m = await requestedModel(deps, req, res);
    if (!m.generation)
      throw new AppError(
        "unsupported_operation",
        `Model ${m.id} is a VAE only: it does not generate images.`,
      );
    const bytes = req.body as unknown;
    if (!Buffer.isBuffer(bytes) || bytes.length === 0)
      throw new AppError("empty_body", "The request body is empty.");

    let task: Task;
    let body: GenerateBody;
    let image: Buffer | null = null;
    if (sniffImageFormat(bytes)) {
      // A bare image: image-to-image without parameters.
      if (asked === "text-to-image")
        throw new AppError("invalid_request", 'Text-to-image takes JSON: {"inputs": "<prompt>", ...}.');
      task = "image-to-image";
      body = { inputs: "" };
      image = bytes;
    } else {
      let json: unknown;
      try {
        json = JSON.parse(bytes.toString("utf8"));
      } catch {
        throw new AppError("invalid_request", "The body is neither JSON nor a PNG, JPEG or WebP image.");
      }
      // Sizes and `inputs` before the schema: every text capped, whatever the body's size.
      checkGenerateJson(json, deps.generateLimits.maxPromptChars, asked);
      body = parseOrThrow(GenerateBody, json, "invalid_parameter");
      const decoded = asked === "text-to-image" ? null : base64Image(body.inputs);
      if (asked === "image-to-image" && !decoded)
        throw new AppError("invalid_image", "Invalid inputs: not a base64-encoded PNG, JPEG or WebP image.", {
          details: { parameter: "inputs" },
        });
      task = decoded ? "image-to-image" : "text-to-image";
      image = decoded;
      if (!decoded && bytes.length > maxJson)
        throw new AppError(
          "payload_too_large",
          `The body is larger than the ${maxJson} bytes a JSON body without an image takes (MAX_JSON_BODY_BYTES).`,
          { details: { limit: "MAX_JSON_BODY_BYTES", max: maxJson } },
        );
    }
    if (!m.generation.tasks.includes(task))
      throw new AppError(
        "unsupported_operation",
        `Model ${m.id} does not do ${task} (it has no VAE encoder).`,
      );
    const p = parametersOf(body);
    const params = resolveGenerate(
      task,
      task === "text-to-image" ? body.inputs : (p.prompt ?? ""),
      p,
      m.generation.defaults,
      deps.generateLimits,
      () => randomInt(2 ** 32),
      m.generation.size_multiple,
    );
    // One image per job: its pixels against the per-job cap too (the answer's bytes, JPEG or
    // PNG, are known once encoded: the worker checks them).
    const { width, height, target_size } = params;
    if (width !== null && height !== null)
      checkJobOutput(`Generating ${width}x${height}`, width * height, null, deps.limits);
    if (target_size)
      checkJobOutput(
        `Resizing to ${target_size.width}x${target_size.height}`,
        target_size.width * target_size.height,
        null,
        deps.limits,
      );
    const accept = String(req.headers.accept ?? "*/*").toLowerCase();
    const wantsImage = /image\//.test(accept);
    const response: GenerateResponse =
      accept.includes("application/json") || (isHandlerStyle(body) && !wantsImage) ? "json" : "image";
    const format: "png" | "jpeg" = accept.includes("image/png") ? "png" : "jpeg";
    res.setHeader("x-seed", String(params.seed));
    const data = { kind: "generate" as const, model: m.id, params, response, format };

    // x-use-cache (default true): a seeded request is deterministic, so a synchronous one may be
    // answered from the cache. Unseeded requests draw a new seed each time and are never cached.
    const cacheable =
      deps.cache !== null &&
      p.seed != null &&
      headerFlag(req.headers["x-use-cache"], true) &&
      req.headers.prefer === undefined;
    // Each key's own entries (see ResultCache): a hit costs no GPU, so it is not counted against
    // the key's rate, and it can only be an answer this key asked for before.
    const owner = principalOf(res).owner;
    const hash = cacheable ? requestHash(data, image) : null;
    if (hash && deps.cache) {
      const hit = await deps.cache.get(owner, hash);
      if (hit) {
        res.setHeader("x-cache", "HIT");
        return writeAnswer(res, hit.result, hit.bytes, { imageAsJson: response === "json" });
      }
      res.setHeader("x-cache", "MISS");
    }
    // The image's raw pixels bound what the answer takes in Redis (unknown: an init image's size).
    const size = target_size ?? (width !== null && height !== null ? { width, height } : null);
    await submitJob(deps, req, res, data, image, {
      ...(size ? { resultBytes: size.width * size.height * 3 } : {}),
      webhook: body.webhook ? { url: body.webhook, events: body.webhook_events_filter ?? null } : null,
      ...(hash && deps.cache
        ? { onAnswered: (result: JobResult, bytes: Buffer) => deps.cache!.put(owner, hash, result, bytes) }
        : {}),
    });
  }

  for (const path of modelPaths("/v1/text-to-image"))
    router.post(path, jsonOnly, (req, res) => handle(req, res, "text-to-image"));
  for (const path of modelPaths("/v1/image-to-image"))
    router.post(path, withImage, (req, res) => handle(req, res, "image-to-image"));
  // The HF Inference API path: `@huggingface/inference` with endpointUrl <us>/models/<id>, a
  // Hub repository id's slash included (`/models/owner/name`, as the Hub's own URLs read).
  for (const path of modelPaths("/models"))
    router.post(path, withImage, (req, res) => handle(req, res, "auto"));
  return router;
}
