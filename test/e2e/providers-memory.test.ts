// What a worker runs its models on, and the models it refuses to load, seen from outside: a real
// worker process on this CPU-only machine reports cpu in its log, its metrics, its own
// /health/ready and the API's; asked for cuda it warns once per model; and a model set over its
// memory budget stops it at start with one line saying what to do.
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startApp, stop, waitFor } from "../../scripts/lib.ts";
import { REDIS_URL, type Stack, startStack, TEST_MODELS_DIR } from "./stack.ts";

/** A worker whose every log line is kept (JSON, info and up). */
function worker(env: Record<string, string>) {
  const child = startApp("worker", { LOG_LEVEL: "info", GENERATE_DEFAULT_MODELS: "false", ...env }, "pipe");
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const lines = () =>
    out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, lines, exited };
}

const MODELS = "sd-v1-tiny,sd-tiny";

describe("execution providers", () => {
  let stack: Stack;
  let asked: ReturnType<typeof worker>;
  let healthPort: number;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    stack = await startStack({}, { worker: { MODELS } });
    healthPort = await freePort();
    asked = worker({
      REDIS_URL,
      QUEUE_PREFIX: stack.prefix,
      MODELS_DIR: TEST_MODELS_DIR,
      MODELS,
      HEARTBEAT_SECONDS: "1",
      HEALTH_PORT: String(healthPort),
      EXECUTION_PROVIDERS: "cuda,cpu",
    });
    children.push(asked.child);
    await waitFor(
      async () => {
        if (asked.child.exitCode !== null) throw new Error("the worker exited during start-up");
        return asked.lines().some((l) => l.msg === "worker ready");
      },
      120_000,
      "the cuda-asking worker to be ready",
    );
  }, 180_000);
  afterAll(async () => {
    await Promise.all(children.map((c) => stop(c)));
    await stack?.stop();
  });

  it("asked for cuda without one, warns once per model and names cpu in its log", () => {
    const warns = asked
      .lines()
      .filter((l) => l.msg === "model fell back from the execution provider asked for");
    expect(warns.map((w) => w.model).sort()).toEqual(["sd-tiny", "sd-v1-tiny"]);
    for (const w of warns) {
      expect(w).toMatchObject({ level: 40, requested: "cuda", provider: "cpu" });
      expect(w.reason).toMatch(/cuda: libonnxruntime_providers_cuda\.so is not installed/);
    }
    // One line for every model: a worker serving dozens does not log dozens of lines.
    const loaded = asked.lines().filter((l) => l.msg === "model sessions loaded");
    expect(loaded).toHaveLength(1);
    expect(loaded[0]!.providers).toEqual({ "sd-tiny": "cpu", "sd-v1-tiny": "cpu" });
  });

  it("exports the provider as a metric label and shows it in its own /health/ready", async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
    expect(metrics).toContain('hybrid_worker_model_provider{model="sd-v1-tiny",provider="cpu"} 1');
    expect(metrics).toContain('hybrid_worker_model_provider{model="sd-tiny",provider="cpu"} 1');
    const ready = await fetch(`http://127.0.0.1:${healthPort}/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: "ok",
      providers: { "sd-v1-tiny": "cpu", "sd-tiny": "cpu" },
    });
  });

  it("shows each model's providers across workers in the API's /health/ready, beside what was there", async () => {
    let body: Record<string, unknown> = {};
    await waitFor(
      async () => {
        body = (await (await fetch(`${stack.baseUrl}/health/ready`)).json()) as Record<string, unknown>;
        return body.workers === 2;
      },
      20_000,
      "both workers in the directory",
    );
    expect(body).toEqual({
      status: "ready",
      workers: 2,
      models: ["sd-tiny", "sd-v1-tiny"],
      providers: { "sd-tiny": ["cpu"], "sd-v1-tiny": ["cpu"] },
    });
  });

  it("with EXECUTION_PROVIDERS unset, says a model fell back from the default cuda at INFO, not WARN", async () => {
    const plain = worker({
      REDIS_URL: "redis://127.0.0.1:1",
      MODELS_DIR: TEST_MODELS_DIR,
      MODELS: "sd-v1-tiny",
    });
    children.push(plain.child);
    // It gets as far as the models before Redis (unreachable here) matters.
    await waitFor(
      async () => plain.lines().some((l) => l.msg === "models loaded"),
      120_000,
      "the default worker to load its model",
    );
    await stop(plain.child);
    const fell = plain
      .lines()
      .filter((l) => l.msg === "model fell back from the execution provider asked for");
    expect(fell).toHaveLength(1);
    expect(fell[0]).toMatchObject({ level: 30, models: ["sd-v1-tiny"], provider: "cpu", default: true });
    expect(plain.lines().filter((l) => Number(l.level) >= 40 && String(l.msg).includes("provider"))).toEqual(
      [],
    );
  });
});

describe("MODEL_MEMORY_BUDGET", () => {
  it("refuses to start a worker whose models do not fit, in one line naming sizes, total, budget and the fix", async () => {
    const w = worker({
      REDIS_URL: "redis://127.0.0.1:1",
      MODELS_DIR: TEST_MODELS_DIR,
      MODELS,
      MODEL_MEMORY_BUDGET: "64KiB",
    });
    expect(await w.exited).toBe(1);
    const lines = w.lines();
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).toMatchObject({ level: 60, budgetBytes: 65536 });
    expect(Object.keys(line.models as object).sort()).toEqual(["sd-tiny", "sd-v1-tiny"]);
    expect(line.msg).toMatch(
      /^the models' weights do not fit this worker's memory budget, refusing to start: sd-tiny [\d.]+ [KM]iB, sd-v1-tiny [\d.]+ [KM]iB; total [\d.]+ [KM]iB > budget 64\.0 KiB \(MODEL_MEMORY_BUDGET\)\. Serve fewer models here \(MODELS; run other workers for the rest\) or raise MODEL_MEMORY_BUDGET\.$/,
    );
  });
});
