import { GenerateBody, GeneratedImage, GenerateHeaders } from "@hybrid/protocol";
import { z } from "zod";
import type { ZodOpenApiOperationObject, ZodOpenApiPathsObject, ZodOpenApiResponseObject } from "zod-openapi";
import {
  binary,
  headerParams,
  imageBody,
  jobIdHeader,
  ModelPath,
  submitResponses,
  withRepoIdPaths,
} from "../openapi-parts.ts";

/** The headers of a generation's answer (and of its job's result). */
export const generationHeaders = {
  "x-seed": z
    .string()
    .meta({ description: "The seed used (given, or drawn for this request).", example: "42" }),
  "x-job-id": jobIdHeader.optional(),
  "x-cache": z
    .enum(["HIT", "MISS"])
    .optional()
    .meta({
      description:
        "Seeded synchronous requests: whether the answer came from the cache. Absent when the cache " +
        "does not take the request (no seed, `x-use-cache: false`, a `Prefer` header, cache off).",
    }),
  "x-prompt-truncated": z
    .literal("true")
    .optional()
    .meta({ description: "The prompt was longer than the text encoder takes (77 tokens)." }),
};

const generateResult: ZodOpenApiResponseObject = {
  id: "GenerationResult",
  description:
    "The image: bytes (JPEG; PNG with `Accept: image/png`) for HF task clients, or " +
    '`{"image": "<base64>"}` for the custom-handler body shape (flat parameters) or ' +
    "`Accept: application/json`.",
  headers: z.object(generationHeaders),
  content: {
    "image/jpeg": { schema: binary },
    "image/png": { schema: binary },
    "application/json": { schema: GeneratedImage },
  },
};

function generateOperation(
  operationId: string,
  summary: string,
  description: string,
  images: boolean,
): ZodOpenApiOperationObject {
  return {
    operationId,
    tags: ["generation"],
    summary,
    description:
      `${description} Every text field is capped at \`MAX_TEXT_CHARS\` characters (4000; ` +
      "`negative_prompt` as a list counted joined), and a JSON body without an image at " +
      "`MAX_JSON_BODY_BYTES` (256 KiB, 413 `payload_too_large`).",
    requestParams: { path: ModelPath, header: headerParams(GenerateHeaders) },
    requestBody: {
      required: true,
      content: { "application/json": { schema: GenerateBody }, ...(images ? imageBody : {}) },
    },
    responses: submitResponses(generateResult),
  };
}

/** The OpenAPI paths of `generateRoutes` (generate.ts). */
export const generatePaths: ZodOpenApiPathsObject = withRepoIdPaths({
  "/v1/text-to-image/{model}": {
    post: generateOperation(
      "textToImage",
      "Generate an image from a prompt",
      "PROTOCOL §3. Parameters flat (the custom-handler shape, answered as JSON) or under " +
        "`parameters` (the HF task shape, answered as image bytes).",
      false,
    ),
  },
  "/v1/image-to-image/{model}": {
    post: generateOperation(
      "imageToImage",
      "Generate an image from an image and a prompt",
      "PROTOCOL §4. The init image as base64 in `inputs` (prompt in `parameters.prompt`), or the raw " +
        "image as the body (no parameters).",
      true,
    ),
  },
  "/models/{model}": {
    post: generateOperation(
      "runModel",
      "The HF Inference API shape",
      "What `@huggingface/inference` sends with `endpointUrl` `<server>/models/{model}`: " +
        "text-to-image or image-to-image, read from the body (an image in `inputs`, or as the body, " +
        "is image-to-image).",
      true,
    ),
  },
});
