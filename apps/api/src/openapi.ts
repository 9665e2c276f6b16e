import { createRequire } from "node:module";
import {
  ErrorBody,
  ErrorCode,
  GenerateBody,
  GeneratedImage,
  JobObject,
  ModelEntry,
  QueryBool,
  QueryNumber,
  QueryPositiveInt,
  QueryShape,
} from "@hybrid/protocol";
import { type CreateDocumentOptions, createDocument, type ZodOpenApiPathsObject } from "zod-openapi";
import { dashboardPaths } from "./dashboard.openapi.ts";
import { metricsPaths } from "./metrics.openapi.ts";
import { docsPaths } from "./routes/docs.openapi.ts";
import { generatePaths } from "./routes/generate.openapi.ts";
import { healthPaths } from "./routes/health.openapi.ts";
import { jobPaths } from "./routes/jobs.openapi.ts";
import { modelPaths } from "./routes/models.openapi.ts";
import { vaePaths } from "./routes/vae.openapi.ts";
import { webPaths } from "./routes/web.openapi.ts";

/**
 * Which routes need no key, as every document says it (README, docs/*.md, this document's
 * description; a test holds them to this wording): the ones mounted before `authenticate` in
 * `app.ts`.
 */
export const PUBLIC_ROUTES =
  "every route but `/health/*`, `/metrics` (unless `METRICS_ENABLED=false`), `/openapi.json`, " +
  "`/docs`, the playground (`/` and its files) and the queue dashboard (`/admin/queues`, which has " +
  "its own `ADMIN_KEY`) needs `Authorization: Bearer <key>`";

/*
 * The OpenAPI 3.1 document of the API (`GET /openapi.json`), assembled from the paths each router
 * declares beside itself (`routes/*.openapi.ts`, `metrics.openapi.ts`, `dashboard.openapi.ts`).
 * Every request and answer schema in it is one the code uses: the routes' parsers and
 * `@hybrid/protocol`'s request headers and answers.
 */

const { version } = createRequire(import.meta.url)("../package.json") as { version: string };

/**
 * The query helpers parse strings (transforms, preprocess): in the document they read as what a
 * client sends, which is what generated clients should build.
 */
const INPUT_OVERRIDES = new Map<unknown, Record<string, unknown>>([
  [
    QueryShape,
    {
      type: "array",
      items: { type: "integer", minimum: 1 },
      description:
        "The tensor's shape, the key repeated once per dimension as diffusers sends it " +
        "(`shape=1&shape=4&shape=64&shape=64`); `shape=[1,4,64,64]` and `shape=1,4,64,64` work too.",
    },
  ],
  [
    QueryBool,
    { type: "boolean", description: "`True`/`False` (as Python sends them), `true`/`false` or `1`/`0`." },
  ],
  [QueryNumber, { type: "number" }],
  [QueryPositiveInt, { type: "integer", minimum: 1, maximum: 1_000_000 }],
]);

const overrideInputs: CreateDocumentOptions["override"] = ({ jsonSchema, zodSchema, io }) => {
  if (io !== "input") return;
  const replacement = INPUT_OVERRIDES.get(zodSchema);
  const schema = jsonSchema as Record<string, unknown>;
  if (replacement) {
    for (const key of Object.keys(schema)) delete schema[key];
    Object.assign(schema, replacement);
    return;
  }
  // zod leaves out the default of a parsed (piped) parameter; ours are all valid inputs too.
  const def = zodSchema._zod.def as { type: string; defaultValue?: unknown };
  if (def.type === "default" && schema.default === undefined) {
    const value = def.defaultValue;
    if (["string", "number", "boolean"].includes(typeof value)) schema.default = value;
  }
};

/** Every router's paths, in the order the document lists them. */
const paths: ZodOpenApiPathsObject = {
  ...vaePaths,
  ...generatePaths,
  ...jobPaths,
  ...modelPaths,
  ...healthPaths,
  ...metricsPaths,
  ...docsPaths,
  ...webPaths,
  ...dashboardPaths,
};

let built: ReturnType<typeof createDocument> | undefined;

/** The OpenAPI 3.1 document of the API; built on first use, then kept. */
export function openApiDocument(): ReturnType<typeof createDocument> {
  built ??= createDocument(
    {
      openapi: "3.1.0",
      info: {
        title: "hybrid-inference",
        version,
        description:
          "Hugging Face-compatible remote VAE (decode/encode) and text-to-image / image-to-image " +
          `endpoints, run as queued jobs. With API keys configured ${PUBLIC_ROUTES}; without keys ` +
          "the service is open. Every error is JSON `ErrorBody`.",
      },
      tags: [
        { name: "vae", description: "Remote VAE (diffusers `remote_decode` / `remote_encode`)." },
        { name: "generation", description: "Text-to-image and image-to-image." },
        { name: "jobs", description: "Every inference request is a job: read, list, stream, cancel." },
        { name: "models", description: "What the workers serve." },
        { name: "health", description: "Probes." },
        { name: "operations", description: "Metrics, documentation, dashboard." },
      ],
      security: [{ bearerAuth: [] }],
      paths,
      components: {
        securitySchemes: {
          bearerAuth: {
            type: "http",
            scheme: "bearer",
            description: "An API key (`pnpm keys create NAME`). Only when the service has keys.",
          },
          adminBasic: {
            type: "http",
            scheme: "basic",
            description: "The dashboard in a browser: any user name, `ADMIN_KEY` as the password.",
          },
          adminBearer: { type: "http", scheme: "bearer", description: "`ADMIN_KEY`." },
        },
        schemas: { ErrorBody, ErrorCode, JobObject, GenerateBody, GeneratedImage, ModelEntry },
      },
    },
    { override: overrideInputs },
  );
  return built;
}
