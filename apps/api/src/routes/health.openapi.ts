import { HealthLive, HealthReady } from "@hybrid/protocol";
import type { ZodOpenApiPathsObject } from "zod-openapi";
import { errors, publicOp } from "../openapi-parts.ts";

/** The OpenAPI paths of `healthRoutes` (health.ts). */
export const healthPaths: ZodOpenApiPathsObject = {
  "/health/live": {
    get: {
      operationId: "healthLive",
      tags: ["health"],
      summary: "The process is up",
      ...publicOp,
      responses: { "200": { description: "Up.", content: { "application/json": { schema: HealthLive } } } },
    },
  },
  "/health/ready": {
    get: {
      operationId: "healthReady",
      tags: ["health"],
      summary: "Redis answers and a worker serves a model",
      ...publicOp,
      responses: {
        "200": { description: "Ready.", content: { "application/json": { schema: HealthReady } } },
        ...errors(503),
      },
    },
  },
};
