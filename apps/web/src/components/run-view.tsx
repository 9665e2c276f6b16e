import { downloadName, formatBytes, formatMs, percentOf } from "../format.ts";
import { isActive, type RunState } from "../run-state.ts";
import { ErrorNote } from "./error-note.tsx";
import type { GenerationRun } from "./use-generation.ts";

function statusText(s: RunState): string {
  switch (s.phase) {
    case "idle":
      return "Ready.";
    case "submitting":
      return "Submitting…";
    case "queued": {
      const pos = s.job?.queue_position;
      return pos === null || pos === undefined
        ? "Queued."
        : `Queued: ${pos} job${pos === 1 ? "" : "s"} ahead.`;
    }
    case "running":
      if (s.canceling) return "Canceling…";
      return s.total ? `Running: step ${s.step} of ${s.total}.` : "Running…";
    case "succeeded":
      return "Done.";
    case "failed":
      return "Failed.";
    case "canceled":
      return "Canceled.";
  }
}

/** A run as it goes: status, progress bar, latest preview, then the image with its facts. */
export function RunView({
  run,
  idPrefix,
  onUseSeed,
}: {
  run: GenerationRun;
  idPrefix: string;
  onUseSeed: (seed: number) => void;
}) {
  const { state, result } = run;
  const pct = percentOf(state.step, state.total);
  const active = isActive(state);
  const extension = result?.contentType === "image/png" ? "png" : "jpg";
  return (
    <section class="run" aria-labelledby={`${idPrefix}-run-title`}>
      <h2 id={`${idPrefix}-run-title`} class="visually-hidden">
        Result
      </h2>
      <div class="run-head">
        <p class="status" role="status" data-phase={state.phase}>
          {statusText(state)}
        </p>
        {active && (
          <button
            type="button"
            class="danger"
            onClick={() => void run.cancel()}
            disabled={!state.job || state.canceling}
          >
            Cancel
          </button>
        )}
      </div>
      {state.phase !== "idle" && (
        <div class="progress-row">
          <progress id={`${idPrefix}-progress`} max={100} value={pct} aria-label="Progress" />
          <span class="percent" data-testid="percent" aria-hidden="true">
            {pct} %
          </span>
        </div>
      )}
      <ErrorNote error={state.error} />
      <div class="canvas">
        {result ? (
          <img
            class="result"
            src={result.url}
            alt={`Generated image, seed ${result.seed}`}
            data-testid="result-image"
          />
        ) : state.preview ? (
          <img class="preview" src={state.preview} alt={`Latent preview at step ${state.previewStep}`} />
        ) : (
          <p class="placeholder">{active ? "Waiting for the first step…" : "The image appears here."}</p>
        )}
      </div>
      {result && (
        <>
          <dl class="facts">
            <div>
              <dt>Seed</dt>
              <dd data-testid="seed">{result.seed}</dd>
            </div>
            <div>
              <dt>Queue</dt>
              <dd>{formatMs(state.job?.metrics.queue_ms)}</dd>
            </div>
            <div>
              <dt>Run</dt>
              <dd>{formatMs(state.job?.metrics.run_ms)}</dd>
            </div>
            <div>
              <dt>Total</dt>
              <dd>{formatMs(state.submittedAt === null ? null : result.at - state.submittedAt)}</dd>
            </div>
            <div>
              <dt>File</dt>
              <dd>
                {extension.toUpperCase()}, {formatBytes(result.size)}
              </dd>
            </div>
          </dl>
          <div class="actions">
            <a class="button" href={result.url} download={downloadName(result.model, result.seed, extension)}>
              Download
            </a>
            <button type="button" onClick={() => onUseSeed(result.seed)}>
              Reuse seed
            </button>
            <a class="button" href={`#/jobs/${encodeURIComponent(result.jobId)}`}>
              Job details
            </a>
          </div>
        </>
      )}
    </section>
  );
}
