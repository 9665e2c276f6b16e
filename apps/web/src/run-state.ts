import type { JobObject } from "@hybrid/client";
import type { JobEventName } from "@hybrid/protocol";
import { describeError, jobError, type ShownError } from "./errors.ts";

/** Where a generation run is, from the click to its image (or its end). */
export type RunPhase = "idle" | "submitting" | "queued" | "running" | "succeeded" | "failed" | "canceled";

export interface RunState {
  phase: RunPhase;
  /** The job as its latest event described it. */
  job: JobObject | null;
  /** Denoising steps done, of `total` (null until the first progress event). */
  step: number;
  total: number | null;
  /** The latest latent preview (a JPEG data URL), and the step it shows. */
  preview: string | null;
  previewStep: number | null;
  error: ShownError | null;
  /** A cancel was asked for and the job has not ended yet. */
  canceling: boolean;
  /** `performance.now()` at the click and at the end: the wall time the user waited. */
  submittedAt: number | null;
  finishedAt: number | null;
}

export type RunAction =
  | { type: "submit"; at: number }
  | { type: "submitted"; job: JobObject }
  | { type: "event"; event: JobEventName; job: JobObject; at: number }
  | { type: "cancel" }
  | { type: "error"; error: unknown; at: number }
  | { type: "reset" };

export const IDLE: RunState = {
  phase: "idle",
  job: null,
  step: 0,
  total: null,
  preview: null,
  previewStep: null,
  error: null,
  canceling: false,
  submittedAt: null,
  finishedAt: null,
};

const ENDED: ReadonlySet<RunPhase> = new Set(["idle", "succeeded", "failed", "canceled"]);

/** True while the run waits for the API or its job: the time to show a cancel button. */
export const isActive = (s: RunState): boolean => !ENDED.has(s.phase);

const PHASE_OF_STATUS: Record<JobObject["status"], RunPhase> = {
  queued: "queued",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  canceled: "canceled",
};

/**
 * The next state of a run. Events replayed or late after the end change nothing: a job's stream
 * ends with exactly one terminal event, and the page may still be told of it twice (the stream
 * and the cancel's answer).
 */
export function runReducer(s: RunState, a: RunAction): RunState {
  switch (a.type) {
    case "reset":
      return IDLE;
    case "submit":
      return { ...IDLE, phase: "submitting", submittedAt: a.at };
    case "submitted":
      if (s.phase !== "submitting") return s;
      return { ...s, job: a.job, phase: PHASE_OF_STATUS[a.job.status] };
    case "cancel":
      return isActive(s) ? { ...s, canceling: true } : s;
    case "error":
      if (!isActive(s) && s.phase !== "succeeded") return s;
      return { ...s, phase: "failed", error: describeError(a.error), canceling: false, finishedAt: a.at };
    case "event":
      return onEvent(s, a.event, a.job, a.at);
  }
}

function onEvent(s: RunState, event: JobEventName, job: JobObject, at: number): RunState {
  if (!isActive(s)) return s;
  const progress = job.progress;
  const next: RunState = { ...s, job };
  if (progress) {
    next.step = progress.step;
    next.total = progress.total;
    if (progress.preview) {
      next.preview = progress.preview;
      next.previewStep = progress.step;
    }
  }
  switch (event) {
    case "queued":
      return { ...next, phase: "queued" };
    case "started":
    case "progress":
      return { ...next, phase: "running" };
    case "succeeded":
      // Every step ran: the bar ends full even when the last progress event was not seen.
      return {
        ...next,
        phase: "succeeded",
        step: next.total ?? 1,
        total: next.total ?? 1,
        canceling: false,
        finishedAt: at,
      };
    case "failed":
      return {
        ...next,
        phase: "failed",
        error: jobError(job.error) ?? { message: "The job failed." },
        canceling: false,
        finishedAt: at,
      };
    case "canceled":
      return { ...next, phase: "canceled", canceling: false, finishedAt: at };
  }
}
