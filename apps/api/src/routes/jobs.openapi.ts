import { GeneratedImage, JobEventsHeaders, JobEventsQuery, JobList, JobObject } from "@hybrid/protocol";
import { z } from "zod";
import type { ZodOpenApiPathsObject } from "zod-openapi";
import { errors, JobPath, jobIdHeader, text } from "../openapi-parts.ts";
import { generationHeaders } from "./generate.openapi.ts";
import { ListQuery } from "./jobs.ts";
import { decodeResult, tensorHeaders } from "./vae.openapi.ts";

/** Reading a job: another key's job is as absent as a missing one (404). */
const JOB_ERRORS = [401, 404, 500, 503];

/** The OpenAPI paths of `jobRoutes` (jobs.ts). */
export const jobPaths: ZodOpenApiPathsObject = {
  "/v1/jobs": {
    get: {
      operationId: "listJobs",
      tags: ["jobs"],
      summary: "The caller's jobs, newest first",
      requestParams: { query: ListQuery },
      responses: {
        "200": {
          description: "A page of jobs.",
          // Named here, not in the components map: there zod-openapi would render JobObject for input too.
          content: { "application/json": { schema: JobList.meta({ id: "JobList" }) } },
        },
        ...errors(400, 401, 500, 503),
      },
    },
  },
  "/v1/jobs/{id}": {
    get: {
      operationId: "getJob",
      tags: ["jobs"],
      summary: "A job",
      requestParams: { path: JobPath },
      responses: {
        "200": { description: "The job.", content: { "application/json": { schema: JobObject } } },
        ...errors(...JOB_ERRORS),
      },
    },
  },
  "/v1/jobs/{id}/result": {
    get: {
      operationId: "getJobResult",
      tags: ["jobs"],
      summary: "A job's result",
      description:
        "The bytes, status and headers the synchronous call answers. A failed job answers its error " +
        "(its code's status).",
      requestParams: { path: JobPath },
      responses: {
        "200": {
          description: "The result, exactly as the synchronous request answers it.",
          headers: z.object({ ...tensorHeaders, ...generationHeaders, "x-job-id": jobIdHeader }).partial(),
          content: {
            ...decodeResult.content,
            "application/json": { schema: GeneratedImage },
          },
        },
        ...errors(400, 401, 404, 409, 410, 413, 500, 503),
      },
    },
  },
  "/v1/jobs/{id}/events": {
    get: {
      operationId: "streamJobEvents",
      tags: ["jobs"],
      summary: "Stream a job's events (Server-Sent Events)",
      description:
        "Replays the job's events (after `Last-Event-ID`, or from the start), follows new ones live, " +
        "and ends after the terminal one. Each event is `id: <seq>`, `event: queued | started | " +
        "progress | succeeded | failed | canceled`, `data: <JobObject as JSON>`; `: keep-alive` " +
        "comments in between.",
      requestParams: { path: JobPath, query: JobEventsQuery, header: JobEventsHeaders },
      responses: {
        "200": {
          description: "The event stream; each event's `data` is a `JobObject`.",
          content: {
            "text/event-stream": { schema: { ...text, description: "Server-Sent Events; data: JobObject." } },
          },
        },
        ...errors(...JOB_ERRORS),
      },
    },
  },
  "/v1/jobs/{id}/cancel": {
    post: {
      operationId: "cancelJob",
      tags: ["jobs"],
      summary: "Cancel a job",
      requestParams: { path: JobPath },
      responses: {
        "200": {
          description: "The job had already succeeded or failed: unchanged.",
          content: { "application/json": { schema: JobObject } },
        },
        "202": {
          description:
            "Canceled (a queued job at once), or the cancel is on its way to the worker running it.",
          content: { "application/json": { schema: JobObject } },
        },
        ...errors(...JOB_ERRORS),
      },
    },
  },
};
