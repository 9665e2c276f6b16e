import { PlaygroundConfig } from "@hybrid/protocol";
import type { ZodOpenApiPathsObject } from "zod-openapi";
import { publicOp, text } from "../openapi-parts.ts";

/** The OpenAPI paths of `webRoutes` (web.ts). */
export const webPaths: ZodOpenApiPathsObject = {
  "/": {
    get: {
      operationId: "playground",
      tags: ["operations"],
      summary: "The playground: a page to try every endpoint",
      description:
        "Static files built from `apps/web` (no CDN; it works offline). Public: the page asks for an API " +
        "key when keys are on. 503 with a hint when the page was not built.",
      ...publicOp,
      responses: {
        "200": { description: "The playground's page.", content: { "text/html": { schema: text } } },
        "503": { description: "The playground is not built.", content: { "text/html": { schema: text } } },
      },
    },
  },
  "/playground/config.json": {
    get: {
      operationId: "playgroundConfig",
      tags: ["operations"],
      summary: "What the playground needs to know before its first call",
      ...publicOp,
      responses: {
        "200": {
          description: "Whether to ask for a key, and which links to show.",
          content: { "application/json": { schema: PlaygroundConfig } },
        },
      },
    },
  },
};
