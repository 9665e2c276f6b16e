import { resolve } from "node:path";
import type { HostedModel, ModelSource } from "@hybrid/inference";
import type { Logger } from "pino";

/** What one served model's sessions run on, as the worker found when loading them. */
export interface ModelProvider {
  model: string;
  /** The provider its graphs run on (`cuda+cpu` when its sessions differ). */
  provider: string;
  /** The provider it was asked to run on first. */
  requested: string;
  /** Why it does not run on the one asked for (null: it does). */
  fallback: string | null;
  /** The session thread holding its sessions; null: any thread (a VAE, loaded where it runs). */
  thread: number | null;
}

/** Each served model's provider, from the sessions the host loaded for its directory. */
export function modelProviders(
  hosted: readonly HostedModel[],
  sources: readonly ModelSource[],
): ModelProvider[] {
  const byDir = new Map(hosted.map((h) => [h.dir, h]));
  return sources.flatMap((src) => {
    const h = byDir.get(resolve(src.dir));
    if (!h || h.sessions.size === 0) return [];
    const sessions = [...h.sessions.values()];
    const provider = [...new Set(sessions.map((s) => s.providers[0] ?? "cpu"))].join("+");
    return [
      {
        model: src.id,
        provider,
        requested: sessions[0]!.requested[0] ?? "cpu",
        fallback: sessions.find((s) => s.fallback !== null)?.fallback ?? null,
        thread: h.thread,
      },
    ];
  });
}

/**
 * Logs what the models run on, once, at start: one line for all of them. A model that was asked
 * to run on a GPU and fell back says so at WARN, a line per model, when the operator listed
 * EXECUTION_PROVIDERS (a GPU was expected); under the default list (cuda then cpu), which every
 * CPU-only machine falls back from, one INFO line names the models that did.
 */
export function logProviders(list: readonly ModelProvider[], log: Logger, explicit: boolean): void {
  log.info(
    { providers: Object.fromEntries(list.map((p) => [p.model, p.provider])) },
    "model sessions loaded",
  );
  const fell = list.filter((p) => p.fallback !== null);
  const message = "model fell back from the execution provider asked for";
  if (explicit) {
    for (const p of fell)
      log.warn({ model: p.model, requested: p.requested, provider: p.provider, reason: p.fallback }, message);
  } else if (fell.length > 0) {
    const first = fell[0]!;
    log.info(
      {
        models: fell.map((p) => p.model),
        requested: first.requested,
        provider: first.provider,
        reason: first.fallback,
        default: true,
      },
      message,
    );
  }
}
