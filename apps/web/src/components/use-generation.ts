import type { GenerateResult, HybridClient, Job } from "@hybrid/client";
import { useCallback, useEffect, useReducer, useRef, useState } from "preact/hooks";
import { isUnauthorized } from "../errors.ts";
import { blobUrl } from "../image.ts";
import { IDLE, type RunState, runReducer } from "../run-state.ts";

/** A generated image, ready to show and download. */
export interface ShownResult {
  url: string;
  contentType: string;
  size: number;
  seed: number;
  jobId: string;
  model: string;
  /** `performance.now()` when the image arrived: the end of the wait the user saw. */
  at: number;
}

export interface GenerationRun {
  state: RunState;
  result: ShownResult | null;
  /** Submits a job with `submit` and follows it to its image; a run going on is left (not canceled). */
  start(submit: (signal: AbortSignal) => Promise<Job<GenerateResult>>): Promise<void>;
  /** Asks the API to cancel the job; its stream then ends with `canceled`. */
  cancel(): Promise<void>;
}

/**
 * One generation at a time, as an async job: submit, follow its event stream (progress and
 * previews), then fetch the image. The stream is read with fetch, so it carries the API key.
 */
export function useGeneration(client: HybridClient, onUnauthorized: (e: unknown) => void): GenerationRun {
  const [state, dispatch] = useReducer(runReducer, IDLE);
  const [result, setResult] = useState<ShownResult | null>(null);
  const abort = useRef<AbortController | null>(null);
  const job = useRef<Job<GenerateResult> | null>(null);

  useEffect(
    () => () => {
      if (result) URL.revokeObjectURL(result.url);
    },
    [result],
  );

  const start = useCallback(
    async (submit: (signal: AbortSignal) => Promise<Job<GenerateResult>>) => {
      abort.current?.abort();
      const ctl = new AbortController();
      abort.current = ctl;
      job.current = null;
      setResult(null);
      dispatch({ type: "submit", at: performance.now() });
      try {
        const submitted = await submit(ctl.signal);
        job.current = submitted;
        dispatch({ type: "submitted", job: submitted.submitted });
        let last = "";
        for await (const e of submitted.stream({ signal: ctl.signal })) {
          dispatch({ type: "event", event: e.event, job: e.job, at: performance.now() });
          last = e.event;
        }
        if (last !== "succeeded") return;
        const image = await submitted.result({ signal: ctl.signal });
        setResult({
          url: blobUrl(image.bytes, image.contentType),
          contentType: image.contentType,
          size: image.bytes.length,
          seed: image.seed,
          jobId: submitted.id,
          model: submitted.submitted.model,
          at: performance.now(),
        });
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (isUnauthorized(e)) onUnauthorized(e);
        dispatch({ type: "error", error: e, at: performance.now() });
      }
    },
    [onUnauthorized],
  );

  const cancel = useCallback(async () => {
    const current = job.current;
    if (!current) return;
    dispatch({ type: "cancel" });
    try {
      await current.cancel();
    } catch (e) {
      dispatch({ type: "error", error: e, at: performance.now() });
    }
  }, []);

  // Unmounted, or the key changed: the run goes on at the API, but is no longer followed here.
  useEffect(() => () => abort.current?.abort(), [client]);

  return { state, result, start, cancel };
}
