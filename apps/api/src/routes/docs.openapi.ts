import type { ZodOpenApiPathsObject } from "zod-openapi";
import { publicOp, text } from "../openapi-parts.ts";

/** The OpenAPI paths of `docsRoutes` (docs.ts). */
export const docsPaths: ZodOpenApiPathsObject = {
  "/openapi.json": {
    get: {
      operationId: "openapi",
      tags: ["operations"],
      summary: "This document",
      ...publicOp,
      responses: {
        "200": {
          description: "The OpenAPI 3.1 document.",
          content: { "application/json": { schema: { type: "object" } } },
        },
      },
    },
  },
  "/docs": {
    get: {
      operationId: "docs",
      tags: ["operations"],
      summary: "Interactive documentation (Swagger UI, served locally)",
      ...publicOp,
      responses: {
        "200": { description: "The Swagger UI page.", content: { "text/html": { schema: text } } },
      },
    },
  },
};
