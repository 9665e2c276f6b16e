import type { HybridClient, JobEvent, JobObject, JobOutput } from "@hybrid/client";
import { useEffect, useState } from "preact/hooks";
import { describeError, isUnauthorized, jobError, type ShownError } from "../errors.ts";
import { eventTime, formatClock, formatMs, formatShape } from "../format.ts";
import { base64ImageType, blobUrl } from "../image.ts";
import { ErrorNote } from "./error-note.tsx";

interface Props {
  client: HybridClient;
  /** The tab is shown: the list refreshes only then. */
  active: boolean;
  /** The job opened (`#/jobs/<id>`), if any. */
  jobId: string | undefined;
  onUnauthorized: (e: unknown) => void;
}

/** How often the list is read again while it is shown, in ms. */
const REFRESH_MS = 2000;

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** The caller's recent jobs, updating while shown; one job's events and result when opened. */
export function JobsTab({ client, active, jobId, onUnauthorized }: Props) {
  if (jobId) return <JobDetail key={jobId} client={client} id={jobId} onUnauthorized={onUnauthorized} />;
  return <JobList client={client} active={active} onUnauthorized={onUnauthorized} />;
}

function StatusBadge({ status }: { status: JobObject["status"] }) {
  return <span class={`badge ${status}`}>{status}</span>;
}

function JobList({ client, active, onUnauthorized }: Omit<Props, "jobId">) {
  const [jobs, setJobs] = useState<JobObject[] | null>(null);
  const [error, setError] = useState<ShownError | null>(null);

  useEffect(() => {
    if (!active) return;
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const page = await client.jobs.list({ limit: 50, signal: ctl.signal });
        setJobs(page.data);
        setError(null);
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (isUnauthorized(e)) onUnauthorized(e);
        setError(describeError(e));
      }
      if (!ctl.signal.aborted) timer = setTimeout(load, REFRESH_MS);
    };
    void load();
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [client, active, onUnauthorized]);

  return (
    <section class="card" aria-labelledby="jobs-title">
      <h2 id="jobs-title">Your recent jobs</h2>
      <p class="hint">
        Newest first, refreshed every {REFRESH_MS / 1000} s. Open one to see its events and result.
      </p>
      <ErrorNote error={error} />
      {jobs === null ? (
        <p>Loading…</p>
      ) : jobs.length === 0 ? (
        <p>No jobs yet: generate an image or run the VAE check.</p>
      ) : (
        <div class="table-wrap">
          <table class="jobs">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Kind</th>
                <th scope="col">Model</th>
                <th scope="col">Status</th>
                <th scope="col">Queue</th>
                <th scope="col">Run</th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id}>
                  <td>
                    <a href={`#/jobs/${encodeURIComponent(j.id)}`} aria-label={`Job ${j.id}`}>
                      {formatClock(j.created_at)} · {j.id.slice(0, 8)}
                    </a>
                  </td>
                  <td>{j.kind}</td>
                  <td>{j.model}</td>
                  <td>
                    <StatusBadge status={j.status} />
                    {j.status === "running" && j.progress && (
                      <span class="muted">
                        {" "}
                        {j.progress.step}/{j.progress.total}
                      </span>
                    )}
                  </td>
                  <td>{formatMs(j.metrics.queue_ms)}</td>
                  <td>{formatMs(j.metrics.run_ms)}</td>
                  <td class="error-cell">{j.error?.message ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** A result as the page shows it. */
type ShownOutput =
  | { kind: "image"; url: string; contentType: string }
  | { kind: "video"; url: string; contentType: string }
  | { kind: "tensor"; shape: number[]; dtype: string }
  | { kind: "json"; text: string };

function shownOutput(out: JobOutput): ShownOutput {
  switch (out.kind) {
    case "image":
      return { kind: "image", url: blobUrl(out.bytes, out.contentType), contentType: out.contentType };
    case "video":
      return { kind: "video", url: blobUrl(out.bytes, out.contentType), contentType: out.contentType };
    case "tensor":
      return { kind: "tensor", shape: out.shape, dtype: out.dtype };
    case "json": {
      // The custom-handler shape of a generation: {"image": "<base64>"}.
      const image = (out.value as { image?: unknown } | null)?.image;
      if (typeof image === "string") {
        const type = base64ImageType(image);
        return { kind: "image", url: `data:${type};base64,${image}`, contentType: type };
      }
      return { kind: "json", text: JSON.stringify(out.value, null, 2) };
    }
  }
}

function JobDetail({
  client,
  id,
  onUnauthorized,
}: {
  client: HybridClient;
  id: string;
  onUnauthorized: (e: unknown) => void;
}) {
  const [job, setJob] = useState<JobObject | null>(null);
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [error, setError] = useState<ShownError | null>(null);
  const [output, setOutput] = useState<ShownOutput | null>(null);
  const [outputError, setOutputError] = useState<ShownError | null>(null);

  useEffect(() => {
    const ctl = new AbortController();
    const fail = (e: unknown, set: (s: ShownError) => void) => {
      if (ctl.signal.aborted) return;
      if (isUnauthorized(e)) onUnauthorized(e);
      set(describeError(e));
    };
    const follow = async () => {
      try {
        setJob(await client.jobs.get(id, { signal: ctl.signal }));
        // The log so far, then live events; ends after the terminal one.
        for await (const e of client.jobs.stream(id, { signal: ctl.signal })) {
          // A preview per step would keep every image in memory: the list shows the step only.
          const { preview: _, ...progress } = e.job.progress ?? { step: 0, total: 0 };
          setEvents((list) => [
            ...list,
            { ...e, job: { ...e.job, progress: e.job.progress ? progress : null } },
          ]);
          setJob(e.job);
        }
        const final = await client.jobs.get(id, { signal: ctl.signal });
        setJob(final);
        if (final.status !== "succeeded") return;
        try {
          setOutput(shownOutput(await client.jobs.result(id, { signal: ctl.signal })));
        } catch (e) {
          fail(e, setOutputError);
        }
      } catch (e) {
        fail(e, setError);
      }
    };
    void follow();
    return () => ctl.abort();
  }, [client, id, onUnauthorized]);

  useEffect(
    () => () => {
      if (output && (output.kind === "image" || output.kind === "video") && output.url.startsWith("blob:"))
        URL.revokeObjectURL(output.url);
    },
    [output],
  );

  const cancel = async () => {
    try {
      setJob(await client.jobs.cancel(id));
    } catch (e) {
      if (isUnauthorized(e)) onUnauthorized(e);
      setError(describeError(e));
    }
  };

  return (
    <section class="card" aria-labelledby="job-title">
      <p>
        <a href="#/jobs">← All jobs</a>
      </p>
      <h2 id="job-title">
        Job <code>{id}</code>
      </h2>
      <ErrorNote error={error} />
      {job && (
        <>
          <dl class="facts">
            <div>
              <dt>Status</dt>
              <dd>
                <StatusBadge status={job.status} />
              </dd>
            </div>
            <div>
              <dt>Kind</dt>
              <dd>{job.kind}</dd>
            </div>
            <div>
              <dt>Model</dt>
              <dd>{job.model}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{formatClock(job.created_at)}</dd>
            </div>
            <div>
              <dt>Queue</dt>
              <dd>{formatMs(job.metrics.queue_ms)}</dd>
            </div>
            <div>
              <dt>Run</dt>
              <dd>{formatMs(job.metrics.run_ms)}</dd>
            </div>
            <div>
              <dt>Attempts</dt>
              <dd>{job.attempts}</dd>
            </div>
            {job.seed !== null && (
              <div>
                <dt>Seed</dt>
                <dd>{job.seed}</dd>
              </div>
            )}
          </dl>
          {job.warnings.length > 0 && (
            <ul class="warnings">
              {job.warnings.map((w) => (
                <li key={w}>{w}</li>
              ))}
            </ul>
          )}
          <ErrorNote title="Job error:" error={jobError(job.error)} />
          {!TERMINAL.has(job.status) && (
            <div class="actions">
              <button type="button" class="danger" onClick={() => void cancel()}>
                Cancel job
              </button>
            </div>
          )}
        </>
      )}
      <h3>Events</h3>
      {events.length === 0 ? (
        <p class="muted">Waiting for events…</p>
      ) : (
        <ol class="events">
          {events.map((e) => (
            <li key={e.id}>
              <time dateTime={eventTime(e.id)?.toISOString()}>
                {formatClock(eventTime(e.id)?.toISOString())}
              </time>{" "}
              <span class={`badge ${e.event}`}>{e.event}</span>
              {e.job.progress && (
                <span class="muted">
                  {" "}
                  step {e.job.progress.step} of {e.job.progress.total}
                </span>
              )}
              {e.job.error && <span class="muted"> {e.job.error.message}</span>}
            </li>
          ))}
        </ol>
      )}
      <h3>Result</h3>
      <ErrorNote error={outputError} />
      {output === null ? (
        <p class="muted">
          {job && TERMINAL.has(job.status) && job.status !== "succeeded"
            ? "No result."
            : outputError
              ? ""
              : "Not ready yet."}
        </p>
      ) : output.kind === "image" ? (
        <img class="result" src={output.url} alt={`Result of job ${id}`} />
      ) : output.kind === "video" ? (
        // biome-ignore lint/a11y/useMediaCaption: a decoded latent video has no speech to caption.
        <video class="result" src={output.url} controls />
      ) : output.kind === "tensor" ? (
        <p>
          Tensor {formatShape(output.shape)}, {output.dtype}
        </p>
      ) : (
        <pre>{output.text}</pre>
      )}
    </section>
  );
}
