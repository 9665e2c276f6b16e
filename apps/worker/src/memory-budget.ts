import { freemem } from "node:os";

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/**
 * Reads a size in bytes: a number (`4000000000`, `4e9`) with an optional unit, decimal (`kB`,
 * `MB`, `GB`, `TB`, or `K`/`M`/`G`/`T`) or binary (`KiB`, `MiB`, `GiB`, `TiB`), any case.
 * Null when it is not one.
 */
export function parseBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return null;
  const bytes = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/** A size for people: binary units, three significant digits (`1.50 GiB`, `812 MiB`). */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toPrecision(3)} ${units[i]}`;
}

/** The share of free memory the default budget allows: the rest is ORT's workspace, Node, sharp. */
export const DEFAULT_BUDGET_SHARE = 0.8;

/**
 * The default budget: {@link DEFAULT_BUDGET_SHARE} of the memory free now, or of what the
 * container's memory limit leaves this process when that is less (`os.freemem()` sees the host).
 */
export function defaultMemoryBudget(
  free = freemem(),
  limit = process.constrainedMemory?.() ?? 0,
  rss = process.memoryUsage.rss(),
): number {
  // Without a limit Node reports 0 or a huge number (cgroup v1's "unlimited").
  const left = limit > 0 && limit < 2 ** 60 ? Math.max(0, limit - rss) : Number.POSITIVE_INFINITY;
  return Math.floor(DEFAULT_BUDGET_SHARE * Math.min(free, left));
}

/** The memory a model's sessions will take, as its weight files say. */
export interface ModelSize {
  id: string;
  bytes: number;
}

/**
 * Whether the served models fit the budget: null when they do, else the message a worker
 * refuses to start with, naming each model's size, the total, the budget and what to do.
 * Models sharing one directory share its sessions: their `bytes` must be counted once by the
 * caller (give the others 0).
 */
export function checkMemoryBudget(
  models: readonly ModelSize[],
  budget: { bytes: number; explicit: boolean },
): string | null {
  const total = models.reduce((n, m) => n + m.bytes, 0);
  if (total <= budget.bytes) return null;
  const each = [...models]
    .sort((a, b) => b.bytes - a.bytes)
    .map((m) => `${m.id} ${formatBytes(m.bytes)}`)
    .join(", ");
  const source = budget.explicit
    ? "MODEL_MEMORY_BUDGET"
    : `MODEL_MEMORY_BUDGET unset: ${DEFAULT_BUDGET_SHARE * 100}% of free memory`;
  return (
    `the models' weights do not fit this worker's memory budget, refusing to start: ${each}; ` +
    `total ${formatBytes(total)} > budget ${formatBytes(budget.bytes)} (${source}). ` +
    "Serve fewer models here (MODELS; run other workers for the rest) or raise MODEL_MEMORY_BUDGET."
  );
}
