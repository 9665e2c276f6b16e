import { checkModelId, type ModelInfo } from "@hybrid/protocol";
import type { Request, Response } from "express";
import { assertModelAllowed } from "./auth.ts";
import { findModel, type ModelLookupDeps, waitsForModel } from "./model-lookup.ts";

/**
 * The two paths of a route that names a model: `:model` (a short id, or a Hub-style id with its
 * slash sent as `%2F`) and `:owner/:name` (a Hub-style id with a literal slash, as
 * `{base}/models/{repo id}` builds it). Two routes rather than one pattern with an optional part,
 * so the short form keeps its metric label (`/v1/vae/:model/decode`) byte for byte.
 */
export const modelPaths = (before: string, after = ""): [string, string] => [
  `${before}/:model${after}`,
  `${before}/:owner/:name${after}`,
];

/** The model id a request's path names (either form of {@link modelPaths}), unchecked. */
export const modelIdOf = (req: Request): string => {
  const { owner, name, model } = req.params as Record<string, string | undefined>;
  return owner !== undefined ? `${owner}/${name ?? ""}` : (model ?? "");
};

/**
 * The model a route's path names, as every inference route looks it up: a malformed id is 400
 * `invalid_parameter` (its form is no secret), then a model the key may not use is unknown to it
 * (checked first, so a loading model looks the same), then the worker directory, waiting for a
 * restarting model with `x-wait-for-model` until the client leaves.
 */
export function requestedModel(deps: ModelLookupDeps, req: Request, res: Response): Promise<ModelInfo> {
  const id = checkModelId(modelIdOf(req));
  assertModelAllowed(res, id);
  return findModel(deps, id, waitsForModel(req.headers), () => res.destroyed);
}
