import { decodeTensor, type TensorOutput } from "./tensor.ts";

/** An encoded image (JPEG or PNG). */
export interface ImageOutput {
  kind: "image";
  bytes: Uint8Array;
  /** `image/jpeg` or `image/png`. */
  contentType: string;
}

/** An mp4 video (H.264). */
export interface VideoOutput {
  kind: "video";
  bytes: Uint8Array;
  /** `video/mp4`. */
  contentType: string;
}

/** A JSON answer (the custom-handler shape of a generation: `{"image": "<base64>"}`). */
export interface JsonOutput {
  kind: "json";
  value: unknown;
}

/** Whatever a job's result is, told apart by `kind` (from the answer's headers). */
export type JobOutput = ImageOutput | VideoOutput | TensorOutput | JsonOutput;

/** Reads an answer of the service by its headers, as diffusers' `postprocess_decode` does. */
export async function readOutput(res: Response): Promise<JobOutput> {
  const contentType = (res.headers.get("content-type") ?? "").toLowerCase();
  if (contentType.startsWith("application/json")) return { kind: "json", value: await res.json() };
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.headers.has("shape") || contentType.startsWith("tensor/"))
    return decodeTensor(bytes, res.headers.get("shape"), res.headers.get("dtype"));
  if (contentType.startsWith("video/")) return { kind: "video", bytes, contentType };
  if (contentType.startsWith("image/")) return { kind: "image", bytes, contentType };
  throw new TypeError(`The answer has an unexpected Content-Type: "${contentType}".`);
}
