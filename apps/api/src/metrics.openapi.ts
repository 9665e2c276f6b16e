import type { ZodOpenApiPathsObject } from "zod-openapi";
import { publicOp, text } from "./openapi-parts.ts";

/** The OpenAPI paths of the metrics router (metrics.ts). */
export const metricsPaths: ZodOpenApiPathsObject = {
  "/metrics": {
    get: {
      operationId: "metrics",
      tags: ["operations"],
      summary: "Prometheus metrics",
      description: "Without auth, like `/health/*`. Off (404) with `METRICS_ENABLED=false`.",
      ...publicOp,
      responses: {
        "200": {
          description: "The Prometheus text exposition format.",
          content: { "text/plain": { schema: text } },
        },
      },
    },
  },
};
