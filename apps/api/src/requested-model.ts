import type { ModelInfo } from "@hybrid/protocol";
import type { Request, Response } from "express";
import { assertModelAllowed } from "./auth.ts";
import { findModel, type ModelLookupDeps, waitsForModel } from "./model-lookup.ts";

/**
 * The model a route's `:model` names, as every inference route looks it up: a model the key may
 * not use is unknown to it (checked first, so a loading model looks the same), then the worker
 * directory, waiting for a restarting model with `x-wait-for-model` until the client leaves.
 */
export function requestedModel(deps: ModelLookupDeps, req: Request, res: Response): Promise<ModelInfo> {
  const id = req.params.model as string;
  assertModelAllowed(res, id);
  return findModel(deps, id, waitsForModel(req.headers), () => res.destroyed);
}
