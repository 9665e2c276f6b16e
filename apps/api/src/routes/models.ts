import { type ModelEntry, type ModelInfo, type ModelList, modelIdPath } from "@hybrid/protocol";
import type { WorkerDirectory } from "@hybrid/queue";
import { Router } from "express";
import { modelAllowed } from "../auth.ts";

export interface ModelRouteDeps {
  directory: WorkerDirectory;
}

/** A model's entry in `GET /v1/models`: what its worker announced, plus its tasks and their paths. */
export function modelEntry(m: ModelInfo): ModelEntry {
  // A Hub-style id keeps its slash (`/v1/vae/owner/name/decode`); a short id is one segment, as before.
  const id = modelIdPath(m.id);
  return {
    ...m,
    // Workers announce `task: "vae"` for every model (older APIs parse exactly that); a pipeline
    // is listed by what it is for.
    task: m.generation?.tasks[0] ?? "vae",
    tasks: ["vae", ...(m.generation?.tasks ?? [])],
    endpoints: Object.fromEntries([
      ...m.operations.map((op) => [op, `/v1/vae/${id}/${op}`]),
      ...(m.generation?.tasks ?? []).map((t) => [t, `/v1/${t}/${id}`]),
    ]),
  };
}

/** `GET /v1/models`: the models live workers serve, only those the caller's key may use, by id. */
export function modelRoutes(deps: ModelRouteDeps): Router {
  const router = Router();
  router.get("/v1/models", async (_req, res) => {
    const models = [...(await deps.directory.models(true)).values()]
      .filter((m) => modelAllowed(res, m.id))
      .sort((a, b) => a.id.localeCompare(b.id));
    const list: ModelList = { object: "list", data: models.map(modelEntry) };
    res.json(list);
  });
  return router;
}
