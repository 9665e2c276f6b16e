import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";

/** Execution providers by preference; `cpu` is always appended as the last resort. */
export type ExecutionProvider = "cuda" | "tensorrt" | "cpu";

export interface SessionSettings {
  /** Providers in order of preference. @defaultValue ["cuda", "cpu"] */
  providers: ExecutionProvider[];
  /** Threads ORT uses inside one run; 0 lets ORT pick (one per physical core). @defaultValue 0 */
  intraOpThreads: number;
  /**
   * Let ORT's idle intra-op threads spin between the ops of a run (ORT's default); either way
   * they stop when the run ends. Measured here (`pnpm bench`): spinning off made a TAESD-size
   * decode ~1.5% slower; spinning that went on after each run (ORT's default without the stop)
   * added ~7 ms to a tiny decode's delivery on 2 cores.
   * @defaultValue true
   */
  allowSpinning?: boolean;
}

/** Input/output description of a loaded graph, read from the session's metadata. */
export interface GraphIO {
  name: string;
  type: string;
  shape: Array<number | string>;
}

export interface LoadedSession {
  session: ort.InferenceSession;
  inputs: GraphIO[];
  outputs: GraphIO[];
  /** The providers the session was created with (after any fallback); its first runs the graph. */
  providers: string[];
  /** The providers asked for (the settings', `cpu` appended). */
  requested: string[];
  /** Why the first provider asked for is not the one in use (null: it is). */
  fallback: string | null;
}

const sessions = new Map<string, Promise<LoadedSession>>();

function describe(meta: readonly ort.InferenceSession.ValueMetadata[]): GraphIO[] {
  return meta.map((m) =>
    m.isTensor
      ? { name: m.name, type: m.type, shape: [...m.shape] }
      : { name: m.name, type: "non-tensor", shape: [] },
  );
}

// onnxruntime-node loads GPU providers from libraries beside its binding; the npm package ships
// only the CPU ones (its install script downloads the CUDA ones). Asking for a provider whose
// library is absent fails the session and logs an error, so only ask for those that are there.
const bindingDir = join(
  dirname(createRequire(import.meta.url).resolve("onnxruntime-node")),
  "..",
  "bin",
  "napi-v6",
  process.platform,
  process.arch,
);
const providerLibrary: Record<string, string> = {
  cuda: "libonnxruntime_providers_cuda.so",
  tensorrt: "libonnxruntime_providers_tensorrt.so",
};
const available = (p: string) => {
  const lib = providerLibrary[p];
  return lib !== undefined && existsSync(join(bindingDir, lib));
};

/**
 * The options every worker session is created with, on `executionProviders`: exported so the
 * benches' in-process baselines run exactly what the worker runs.
 */
export function sessionOptions(
  settings: Pick<SessionSettings, "intraOpThreads" | "allowSpinning">,
  executionProviders: string[],
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders,
    graphOptimizationLevel: "all",
    ...(settings.intraOpThreads > 0 ? { intraOpNumThreads: settings.intraOpThreads } : {}),
    extra: {
      session: {
        intra_op: { allow_spinning: settings.allowSpinning === false ? "0" : "1" },
        // Spinning pays between the ops of a run; after it, spinning threads would hold the
        // cores the answer's delivery (this worker, Redis, the API) needs: stop them at once.
        force_spinning_stop: "1",
      },
    },
  };
}

async function create(path: string, settings: SessionSettings): Promise<LoadedSession> {
  const requested = [...new Set<string>([...settings.providers.filter((p) => p !== "cpu"), "cpu"])];
  const missing = requested.filter((p) => p !== "cpu" && !available(p));
  const options = (executionProviders: string[]) => sessionOptions(settings, executionProviders);
  // onnxruntime-node cannot say which provider a session got: it has no getProviders(). What it
  // does tell is whether creating the session with a provider list succeeded, and ORT fails the
  // whole create when a listed GPU provider cannot start (its library or CUDA/cuDNN/TensorRT
  // libraries missing, no device). So the list a create succeeded with is the truth, and its
  // first provider is the one the graph runs on (ORT puts on CPU only the nodes that provider
  // lacks kernels for). On failure the first provider is dropped and the next tried, down to cpu.
  let providers = requested.filter((p) => !missing.includes(p));
  const reasons = missing.map((p) => `${p}: ${providerLibrary[p]} is not installed`);
  for (;;) {
    try {
      const session = await ort.InferenceSession.create(path, options(providers));
      return {
        session,
        inputs: describe(session.inputMetadata),
        outputs: describe(session.outputMetadata),
        providers,
        requested,
        fallback: providers[0] === requested[0] ? null : reasons.join("; "),
      };
    } catch (e) {
      if (providers.length === 1) throw e;
      reasons.push(`${providers[0]}: ${(e as Error).message.split("\n")[0]}`);
      providers = providers.slice(1);
    }
  }
}

/** The session of a model file, created once per thread and reused for every run. */
export function getSession(path: string, settings: SessionSettings): Promise<LoadedSession> {
  let s = sessions.get(path);
  if (!s) {
    s = create(path, settings);
    // A failed load must not be cached forever: the next job tries again.
    s.catch(() => sessions.delete(path));
    sessions.set(path, s);
  }
  return s;
}

export async function releaseSessions(): Promise<void> {
  const all = [...sessions.values()];
  sessions.clear();
  await Promise.all(all.map(async (s) => (await s.catch(() => undefined))?.session.release()));
}
