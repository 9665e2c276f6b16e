import { AppError, type JobResult } from "@hybrid/protocol";
import type { PayloadStore } from "@hybrid/queue";
import type { Response } from "express";

/** How a job's answer is written: as the worker made it, or an image as `{"image": "<base64>"}`. */
export interface AnswerForm {
  /** The custom-handler clients' shape: the image bytes base64 in a JSON object. */
  imageAsJson: boolean;
}

/**
 * Writes a job's answer exactly as the synchronous call answers it: the result's typed fields
 * become headers (`shape`, `dtype`, `x-seed`, `x-prompt-truncated`), the bytes the body. The
 * JSON form is made here, at the edge: stored and cached answers stay the image itself.
 */
export function writeAnswer(res: Response, result: JobResult, bytes: Buffer, form: AnswerForm): void {
  const body = form.imageAsJson ? Buffer.from(JSON.stringify({ image: bytes.toString("base64") })) : bytes;
  res.status(200).setHeader("Content-Type", form.imageAsJson ? "application/json" : result.contentType);
  if (result.shape) res.setHeader("shape", `[${result.shape.join(", ")}]`);
  if (result.dtype) res.setHeader("dtype", result.dtype);
  if (result.seed !== undefined) res.setHeader("x-seed", String(result.seed));
  if (result.promptTruncated) res.setHeader("x-prompt-truncated", "true");
  res.setHeader("Content-Length", body.length);
  res.end(body);
}

/** The job's answer bytes, or 410 when they expired (or were delivered and dropped). */
export async function storedAnswer(store: PayloadStore, result: JobResult): Promise<Buffer> {
  const bytes = await store.get(result.result);
  if (!bytes)
    throw new AppError("payload_expired", "The job's result has expired (or was delivered and removed).");
  return bytes;
}
