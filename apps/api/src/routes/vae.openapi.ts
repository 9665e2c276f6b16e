import { DecodeQuery, DType, EncodeQuery, SubmitHeaders } from "@hybrid/protocol";
import { z } from "zod";
import type { ZodOpenApiPathsObject, ZodOpenApiResponseObject } from "zod-openapi";
import {
  binary,
  headerParams,
  imageBody,
  jobIdHeader,
  ModelPath,
  submitResponses,
  withRepoIdPaths,
} from "../openapi-parts.ts";

/** The headers that describe a tensor answer (decode `pt`, encode, their job results). */
export const tensorHeaders = {
  shape: z
    .string()
    .optional()
    .meta({ description: "Tensor answers: the shape.", example: "[1, 512, 512, 3]" }),
  dtype: DType.optional().meta({ description: "Tensor answers: the element type." }),
};

/** A decode's answer, also what `GET /v1/jobs/{id}/result` answers for a decode job. */
export const decodeResult: ZodOpenApiResponseObject = {
  description:
    "The decoded latents (PROTOCOL §1): an image (`output_type=pil`; JPEG or PNG per `image_format` " +
    "and Accept), an mp4 (`output_type=mp4`, video models), or a raw tensor (`output_type=pt`, or " +
    "`pil` with a processor on the client: uint8 channels-last with `partial_postprocess=True`, " +
    "float16/bfloat16 otherwise) described by the `shape` and `dtype` headers.",
  headers: z.object({ "x-job-id": jobIdHeader, ...tensorHeaders }),
  content: {
    "image/jpeg": { schema: binary },
    "image/png": { schema: binary },
    "video/mp4": { schema: binary },
    "tensor/binary": { schema: binary },
  },
};

const encodeResult: ZodOpenApiResponseObject = {
  description: "The latents (PROTOCOL §2), little-endian, described by the `shape` and `dtype` headers.",
  headers: z.object({ "x-job-id": jobIdHeader, ...tensorHeaders }),
  content: { "tensor/binary": { schema: binary } },
};

/** The OpenAPI paths of `vaeRoutes` (vae.ts). */
export const vaePaths: ZodOpenApiPathsObject = withRepoIdPaths({
  "/v1/vae/{model}/decode": {
    post: {
      operationId: "decode",
      tags: ["vae"],
      summary: "Decode latents",
      description:
        "Latents → image, tensor or mp4, exactly as diffusers' `remote_decode` asks (PROTOCOL §1). " +
        "The answer follows `output_type`, `image_format`, `partial_postprocess` and Accept. " +
        "A job's output is capped as a whole: `MAX_JOB_PIXELS` (batch × frames × height × width) " +
        "and `MAX_OUTPUT_BYTES`; over either, 413 `too_large` naming it, before anything is queued.",
      requestParams: { path: ModelPath, query: DecodeQuery, header: headerParams(SubmitHeaders) },
      requestBody: {
        required: true,
        description: "The latents' bytes, little-endian, `dtype` elements in `shape` order.",
        content: { "tensor/binary": { schema: binary }, "application/octet-stream": { schema: binary } },
      },
      responses: submitResponses(decodeResult),
    },
  },
  "/v1/vae/{model}/encode": {
    post: {
      operationId: "encode",
      tags: ["vae"],
      summary: "Encode an image",
      description:
        "A PNG/JPEG/WebP image, or a `[B, 3, H, W]` tensor in [-1, 1] with `shape` and `dtype`, → " +
        "latents (PROTOCOL §2). `sample=True` (with an optional `seed`) samples instead of taking the mean.",
      requestParams: { path: ModelPath, query: EncodeQuery, header: headerParams(SubmitHeaders) },
      requestBody: {
        required: true,
        content: { ...imageBody, "tensor/binary": { schema: binary } },
      },
      responses: submitResponses(encodeResult),
    },
  },
});
