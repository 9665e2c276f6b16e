import { AppError, isTerminal, type JobList, jobObjectOf, parseOrThrow } from "@hybrid/protocol";
import { type JobEventHub, type JobMeta, type JobStore, jobNotFound, type PayloadStore } from "@hybrid/queue";
import { type Request, type Response, Router } from "express";
import { z } from "zod";
import { storedAnswer, writeAnswer } from "../answer.ts";
import { principalOf } from "../auth.ts";
import { type SseOptions, streamJobEvents } from "../sse.ts";

export interface JobRouteDeps {
  jobs: JobStore;
  hub: JobEventHub;
  store: PayloadStore;
  sse: SseOptions;
}

/** Query of `GET /v1/jobs` (the OpenAPI document is generated from it too). */
export const ListQuery = z.looseObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().min(1).max(200).optional(),
});

/** The job resource: read, list, fetch the result, stream events, cancel. */
export function jobRoutes(deps: JobRouteDeps): Router {
  const router = Router();

  /** The record of a job the caller owns; another owner's job is as absent as a missing one. */
  const ownJob = async (req: Request, res: Response): Promise<JobMeta> => {
    const id = req.params.id as string;
    const meta = await deps.jobs.records.get(id);
    if (!meta || meta.owner !== principalOf(res).owner) throw jobNotFound(id);
    return meta;
  };

  router.get("/v1/jobs", async (req, res) => {
    const q = parseOrThrow(ListQuery, req.query);
    const page = await deps.jobs.views.list(principalOf(res).owner, q.limit, q.cursor);
    const list: JobList = { object: "list", data: page.jobs.map(jobObjectOf), next_cursor: page.next };
    res.json(list);
  });

  router.get("/v1/jobs/:id", async (req, res) => {
    const meta = await ownJob(req, res);
    const view = await deps.jobs.views.of(meta);
    if (!view) throw jobNotFound(meta.id);
    res.json(jobObjectOf(view));
  });

  router.get("/v1/jobs/:id/result", async (req, res) => {
    const meta = await ownJob(req, res);
    const outcome = await deps.jobs.views.outcome(meta);
    if (!outcome) {
      if (meta.canceledAt) throw new AppError("canceled", `Job ${meta.id} was canceled.`);
      throw jobNotFound(meta.id);
    }
    res.setHeader("x-job-id", meta.id);
    const { status } = outcome.view;
    if (!isTerminal(status))
      throw new AppError("job_not_finished", `Job ${meta.id} is ${status}; its result is not ready yet.`, {
        details: { status },
      });
    if (status === "canceled") throw new AppError("canceled", `Job ${meta.id} was canceled.`);
    if (outcome.error) throw outcome.error;
    const result = outcome.result!;
    writeAnswer(res, result, await storedAnswer(deps.store, result), { imageAsJson: meta.imageAsJson });
  });

  router.post("/v1/jobs/:id/cancel", async (req, res) => {
    const meta = await ownJob(req, res);
    const view = await deps.jobs.cancel(meta);
    if (!view) throw jobNotFound(meta.id);
    const object = jobObjectOf(view);
    // 202: canceled (now or before), or the cancel is on its way to the worker; 200: it had
    // already succeeded or failed, and is answered unchanged.
    const finishedBefore = isTerminal(object.status) && object.status !== "canceled";
    res.status(finishedBefore ? 200 : 202).json(object);
  });

  router.get("/v1/jobs/:id/events", async (req, res) => {
    // Held from here until the connection closes, whether it streams or is refused below.
    const release = deps.sse.slots.take(principalOf(res).owner);
    res.once("close", release);
    if (res.destroyed) return release();
    const meta = await ownJob(req, res);
    await streamJobEvents(req, res, meta, deps, deps.sse);
  });

  return router;
}
