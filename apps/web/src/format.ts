import { modelIdFileStem } from "@hybrid/protocol";

/** A duration for people: `—` when unknown, `850 ms` below 10 s, then `12.3 s`, then `2 min 5 s`. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 10_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** A byte count for people: `512 B`, `12.5 KB`, `3.2 MB` (powers of 1024). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** A tensor shape as `1 × 4 × 64 × 64`. */
export const formatShape = (shape: readonly number[]): string => shape.join(" × ");

/** The local time of an ISO date (`14:05:09`), or `—`. */
export function formatClock(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "—" : d.toLocaleTimeString([], { hour12: false });
}

/** The wall-clock time of an SSE event id (`<ms>-<n>`, a Redis stream id), or null. */
export function eventTime(id: string): Date | null {
  const ms = Number(id.split("-")[0]);
  return id && Number.isSafeInteger(ms) && ms > 0 ? new Date(ms) : null;
}

/** Progress as a whole percentage (0–100) of `step` out of `total`. */
export function percentOf(step: number, total: number | null | undefined): number {
  if (!total || total <= 0) return 0;
  return Math.max(0, Math.min(100, Math.round((step / total) * 100)));
}

/**
 * The file name a generated image downloads as: `<model>-<seed>.<ext>`, a Hub-style id's slash
 * written as the Hub's own `--` (a slash would be a folder, or be replaced by the browser).
 */
export const downloadName = (model: string, seed: number, extension: string): string =>
  `${modelIdFileStem(model)}-${seed}.${extension}`;
