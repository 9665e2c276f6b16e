import type { ZodOpenApiPathsObject } from "zod-openapi";
import { ADMIN_FAILURES_PER_MINUTE } from "./dashboard.ts";
import { errorResponse, text } from "./openapi-parts.ts";

/** The OpenAPI paths of `dashboardRoutes` (dashboard.ts). */
export const dashboardPaths: ZodOpenApiPathsObject = {
  "/admin/queues": {
    get: {
      operationId: "dashboard",
      tags: ["operations"],
      summary: "The queue dashboard (Bull Board)",
      description:
        "Every job queue of the models live workers serve, and the webhook queue, read-only. Without " +
        "API keys it is open like the rest; with keys it needs `ADMIN_KEY` (HTTP Basic with it as " +
        "the password, any user name, or `Authorization: Bearer <ADMIN_KEY>`), and is off (404) " +
        "when `ADMIN_KEY` is unset. Never framed by another page (`frame-ancestors 'none'`).",
      security: [{ adminBasic: [] }, { adminBearer: [] }, {}],
      responses: {
        "200": { description: "The dashboard's page.", content: { "text/html": { schema: text } } },
        "401": errorResponse(401, "With API keys: the admin key is missing or wrong."),
        "404": errorResponse(404, "With API keys but no `ADMIN_KEY`: the dashboard is off."),
        "429": errorResponse(
          429,
          `${ADMIN_FAILURES_PER_MINUTE} wrong admin keys from this address within a minute: every attempt from it waits out the minute.`,
        ),
      },
    },
  },
};
