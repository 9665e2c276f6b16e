import { ModelList } from "@hybrid/protocol";
import type { ZodOpenApiPathsObject } from "zod-openapi";
import { errors } from "../openapi-parts.ts";

/** The OpenAPI paths of `modelRoutes` (models.ts). */
export const modelPaths: ZodOpenApiPathsObject = {
  "/v1/models": {
    get: {
      operationId: "listModels",
      tags: ["models"],
      summary: "The models live workers serve",
      description: "Only those the caller's API key may use.",
      responses: {
        "200": { description: "The models.", content: { "application/json": { schema: ModelList } } },
        ...errors(401, 500, 503),
      },
    },
  },
};
