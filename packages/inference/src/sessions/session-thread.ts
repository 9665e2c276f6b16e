// Entry of a session thread (piscina loads this file by path). onnxruntime-node's session.run
// blocks its thread for the whole run, so every session lives here, and the numeric pre- and
// postprocessing runs here too: the main thread stays free for BullMQ's lock renewal. It runs
// every task kind: describe, the VAE endpoints' decode/encode (alone or batched) and generation.
import { workerData } from "node:worker_threads";
import { AppError } from "@hybrid/protocol";
import { move, transferableSymbol, valueSymbol } from "piscina";
import { generate } from "../diffusion/pipeline.ts";
import { batch, decode, encode } from "../vae/task-handlers.ts";
import { getSession, type SessionSettings } from "./session-cache.ts";
import type { DescribeResult, GenerateResult, RunResult, ThreadTask } from "./thread-protocol.ts";

const settings = workerData as SessionSettings;

async function describe(path: string): Promise<DescribeResult> {
  const { inputs, outputs, providers, requested, fallback } = await getSession(path, settings);
  return { inputs, outputs, providers, requested, fallback };
}

/**
 * Hands the answer's pixel or tensor bytes to the main thread by moving their buffer instead of
 * copying it (a 512² image is 786 KB). Small arrays may sit in Node's shared buffer pool, which
 * cannot be moved: those are copied, as is cheap for them.
 */
function transferred<T extends RunResult | GenerateResult>(result: T): T {
  const view = "bytes" in result ? result.bytes : result.data;
  if (view.byteLength < 64 * 1024 || !(view.buffer instanceof ArrayBuffer)) return result;
  const buffer = view.buffer;
  return move({
    get [transferableSymbol]() {
      return [buffer];
    },
    get [valueSymbol]() {
      return result;
    },
  }) as unknown as T;
}

/** {@link transferred} for the answers of a batch: each distinct buffer moves once. */
function transferredAll(results: RunResult[]): RunResult[] {
  const buffers = new Set<ArrayBuffer>();
  for (const r of results) {
    const view = "bytes" in r ? r.bytes : r.data;
    if (view.byteLength >= 64 * 1024 && view.buffer instanceof ArrayBuffer) buffers.add(view.buffer);
  }
  if (buffers.size === 0) return results;
  return move({
    get [transferableSymbol]() {
      return [...buffers];
    },
    get [valueSymbol]() {
      return results;
    },
  }) as unknown as RunResult[];
}

/** Piscina calls this for every task sent to the pool. */
export default async function handle(
  task: ThreadTask,
): Promise<DescribeResult | RunResult | RunResult[] | GenerateResult> {
  switch (task.op) {
    case "describe":
      return describe(task.path);
    case "decode":
      return transferred(await decode(task, settings));
    case "encode":
      return transferred(await encode(task, settings));
    case "batch":
      return transferredAll(await batch(task, settings));
    case "generate":
      try {
        return transferred(await generate(task, settings));
      } finally {
        task.progress?.close();
      }
    default:
      throw new AppError("internal", "Unknown thread task.");
  }
}
