// Helpers shared by the throughput benchmarks: a Redis of their own, percentiles, and CPU time
// per process (the evidence for where a request's time goes on a machine with few cores).
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { sessionOptions } from "@hybrid/inference";
import { Redis } from "ioredis";
import type * as ort from "onnxruntime-node";
import { freePort, startRedisServer, stop } from "../../scripts/lib.ts";
import { type Stack, startStack } from "../e2e/stack.ts";

/** The p-th percentile (0–100) of `xs`, nearest rank. NaN when empty. */
export function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export interface BenchRedis {
  url: string;
  /** True when the bench started this Redis (nothing else talks to it: its counters are ours). */
  private: boolean;
  stop(): Promise<void>;
}

/**
 * `REDIS_URL` when it is set; otherwise a `redis-server` of our own on a free port, so that
 * command counts and Redis CPU time belong to this bench alone (other tests may share the
 * machine's Redis); the machine's Redis when there is no `redis-server` binary.
 */
export async function benchRedis(): Promise<BenchRedis> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, private: false, stop: async () => {} };
  const port = await freePort();
  let child: ChildProcess;
  try {
    child = await startRedisServer(port);
  } catch {
    return { url: "redis://127.0.0.1:6379", private: false, stop: async () => {} };
  }
  return { url: `redis://127.0.0.1:${port}`, private: true, stop: () => stop(child, 2000) };
}

/** A Redis connection for INFO reads. */
export const infoClient = (url: string) => new Redis(url, { maxRetriesPerRequest: 1 });

function infoFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/** Redis CPU time so far (user + system, every thread), in ms. */
export async function redisCpuMs(redis: Redis): Promise<number> {
  const f = infoFields(await redis.info("cpu"));
  return (Number(f.get("used_cpu_user")) + Number(f.get("used_cpu_sys"))) * 1000;
}

/** The redis-server's pid (to tell a private one from a shared one in reports). */
export async function redisPid(redis: Redis): Promise<number> {
  return Number(infoFields(await redis.info("server")).get("process_id"));
}

/**
 * Calls per command so far (`INFO commandstats`). Redis counts the commands a Lua script runs
 * as calls too, besides the EVALSHA itself.
 */
export async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const [k, v] of infoFields(await redis.info("commandstats"))) {
    const calls = /calls=(\d+)/.exec(v);
    if (k.startsWith("cmdstat_") && calls) out.set(k.slice("cmdstat_".length), Number(calls[1]));
  }
  return out;
}

/** `after - before`, per command, dropping zeros. */
export function callsDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out.set(k, d);
  }
  return out;
}

// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ).
const TICK_MS = 10;

/** CPU time (user + system, all threads) of a process so far, in ms; NaN where /proc is absent. */
export function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start at field 3; utime, stime are 14, 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) * TICK_MS;
  } catch {
    return Number.NaN;
  }
}

/** This process's CPU time so far (every thread), in ms. */
export function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `n` formatted with `d` decimals, or "-" when it is not a finite number. */
export const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "-");

/**
 * The execution provider each model's sessions run on in the stack's workers, by model id (the
 * API's `/health/ready`; `cuda+cpu` when workers differ), so a bench prints it beside its ratios
 * and runs its in-process baseline on the same one: lines from a GPU machine then compare.
 */
export async function workerProviders(baseUrl: string): Promise<Record<string, string>> {
  const ready = (await (await fetch(`${baseUrl}/health/ready`)).json()) as {
    providers?: Record<string, string[]>;
  };
  return Object.fromEntries(Object.entries(ready.providers ?? {}).map(([m, p]) => [m, p.join("+")]));
}

/** The provider list for an in-process session on `provider` (cpu for a mixed or unknown one). */
export function inProcessProviders(provider: string | undefined): Array<"cuda" | "tensorrt" | "cpu"> {
  return provider === "cuda" || provider === "tensorrt" ? [provider, "cpu"] : ["cpu"];
}

/**
 * A stack serving `models` (the worker's `MODELS`) for a generation bench: CPU on every path
 * unless asked (EXECUTION_PROVIDERS=cuda on a GPU machine), also where a GPU provider's libraries
 * happen to be installed; the in-process paths follow what the worker got.
 */
export function startBenchStack(models: string): Promise<Stack> {
  return startStack({
    MODELS: models,
    GENERATE_DEFAULT_MODELS: "false",
    EXECUTION_PROVIDERS: process.env.EXECUTION_PROVIDERS ?? "cpu",
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
  });
}

/**
 * An in-process session's options for a model the worker runs on `provider`: the worker's own
 * (session-cache.ts) with its defaults (ORT picks the intra-op thread count, idle threads spin).
 */
export function workerSessionOptions(provider: string | undefined): ort.InferenceSession.SessionOptions {
  return sessionOptions({ intraOpThreads: 0 }, inProcessProviders(provider));
}
