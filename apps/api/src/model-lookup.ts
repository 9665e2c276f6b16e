import type { IncomingHttpHeaders } from "node:http";
import { AppError, headerFlag, type ModelInfo } from "@hybrid/protocol";
import type { WorkerDirectory } from "@hybrid/queue";
import { hungUp } from "./hang-up.ts";

/** What a model lookup needs: the worker directory and how long a loading model takes. */
export interface ModelLookupDeps {
  directory: WorkerDirectory;
  /** What a 503 `model_loading` tells clients to wait, in seconds. */
  modelLoadingSeconds: number;
  /** The longest a request waits (here: for a restarting model's worker), in ms. */
  requestTimeoutMs: number;
}

/**
 * The 404 of a model no worker serves, and of one the caller's key may not use: the same answer,
 * so a restricted key learns nothing of the models it cannot use.
 */
export const unknownModel = (id: string): AppError =>
  new AppError("unknown_model", `Model ${id} is not served by any worker. GET /v1/models lists the models.`);

/**
 * Looks a model up in the worker directory. A model no worker serves is 404 `unknown_model`,
 * unless workers served it before (they are restarting): then 503 `model_loading` with an
 * `estimated_time`, or, with `waitForModel` (the `x-wait-for-model: true` header), a wait for a
 * worker (up to the request timeout).
 */
export async function findModel(
  deps: ModelLookupDeps,
  id: string,
  waitForModel = false,
  /** Whether the client hung up: the wait for a model ends then (nobody would get the answer). */
  gone: () => boolean = () => false,
): Promise<ModelInfo> {
  const { directory } = deps;
  const m = (await directory.models()).get(id);
  if (m) return m;
  // The cache may be a second old: a worker that just started should not get a 404.
  const fresh = (await directory.models(true)).get(id);
  if (fresh) return fresh;
  if (!(await directory.known(id))) throw unknownModel(id);
  if (waitForModel) {
    const until = Date.now() + deps.requestTimeoutMs;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      if (gone()) throw hungUp();
      const back = (await directory.models(true)).get(id);
      if (back) return back;
    }
  }
  throw new AppError("model_loading", `Model ${id} is currently loading`, {
    details: { estimated_time: deps.modelLoadingSeconds },
    retryAfterSeconds: deps.modelLoadingSeconds,
  });
}

/** `x-wait-for-model: true` (`SubmitHeaders`): wait for a restarting model instead of a 503. */
export const waitsForModel = (headers: IncomingHttpHeaders): boolean =>
  headerFlag(headers["x-wait-for-model"], false);
