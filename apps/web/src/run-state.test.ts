import { HybridError, type JobObject } from "@hybrid/client";
import { describe, expect, it } from "vitest";
import { IDLE, isActive, type RunAction, type RunState, runReducer } from "./run-state.ts";

const job = (patch: Partial<JobObject> = {}): JobObject => ({
  id: "j1",
  kind: "generate",
  model: "sd-tiny",
  status: "queued",
  queue_position: 0,
  progress: null,
  created_at: "2026-11-26T10:00:00.000Z",
  started_at: null,
  completed_at: null,
  attempts: 0,
  metrics: { queue_ms: null, run_ms: null },
  error: null,
  seed: 42,
  warnings: [],
  urls: {
    self: "/v1/jobs/j1",
    result: "/v1/jobs/j1/result",
    events: "/v1/jobs/j1/events",
    cancel: "/v1/jobs/j1/cancel",
  },
  ...patch,
});

const run = (actions: RunAction[], from: RunState = IDLE) => actions.reduce(runReducer, from);
const submitted: RunAction[] = [
  { type: "submit", at: 10 },
  { type: "submitted", job: job() },
];
const progress = (step: number, preview?: string): RunAction => ({
  type: "event",
  event: "progress",
  job: job({ status: "running", progress: { step, total: 4, ...(preview ? { preview } : {}) } }),
  at: 20 + step,
});

describe("a generation run", () => {
  it("follows the job from the click to its end, keeping the latest preview", () => {
    let s = run(submitted);
    expect(s.phase).toBe("queued");
    expect(isActive(s)).toBe(true);
    s = run(
      [{ type: "event", event: "started", job: job({ status: "running" }), at: 15 }, progress(1, "data:a")],
      s,
    );
    expect(s).toMatchObject({ phase: "running", step: 1, total: 4, preview: "data:a", previewStep: 1 });
    s = run([progress(2)], s);
    expect(s).toMatchObject({ step: 2, preview: "data:a", previewStep: 1 });
    s = run([{ type: "event", event: "succeeded", job: job({ status: "succeeded" }), at: 99 }], s);
    expect(s).toMatchObject({ phase: "succeeded", step: 4, total: 4, submittedAt: 10, finishedAt: 99 });
    expect(isActive(s)).toBe(false);
  });

  it("fills the bar on success even without a progress event", () => {
    const s = run([
      ...submitted,
      { type: "event", event: "succeeded", job: job({ status: "succeeded" }), at: 5 },
    ]);
    expect([s.step, s.total]).toEqual([1, 1]);
  });

  it("ends canceled after a cancel, and ignores what arrives after the end", () => {
    let s = run([...submitted, progress(1), { type: "cancel" }]);
    expect(s.canceling).toBe(true);
    s = run([{ type: "event", event: "canceled", job: job({ status: "canceled" }), at: 50 }, progress(2)], s);
    expect(s).toMatchObject({ phase: "canceled", canceling: false, step: 1 });
    expect(run([{ type: "cancel" }], s)).toBe(s);
  });

  it("shows a failed job's error, and an API error with its status", () => {
    const failed = run([
      ...submitted,
      {
        type: "event",
        event: "failed",
        job: job({ status: "failed", error: { code: "internal", message: "The worker broke." } }),
        at: 30,
      },
    ]);
    expect(failed.error).toEqual({ message: "The worker broke.", code: "internal" });
    const refused = run([
      { type: "submit", at: 1 },
      {
        type: "error",
        error: new HybridError({ status: 400, code: "invalid_parameter", message: "width: bad", body: null }),
        at: 2,
      },
    ]);
    expect(refused).toMatchObject({ phase: "failed", error: { status: 400, message: "width: bad" } });
  });

  it("drops a submit answer that arrives after a reset", () => {
    const s = run([{ type: "submit", at: 1 }, { type: "reset" }, { type: "submitted", job: job() }]);
    expect(s).toBe(IDLE);
  });
});
