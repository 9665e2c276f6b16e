import type { ServerResponse } from "node:http";
import type { JobKind, JobResult } from "@hybrid/protocol";
import { parseJobError } from "@hybrid/protocol";
import type { Job, Worker } from "bullmq";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** A job's phases on the worker, in ms: the ones the processor reports in the job's result. */
export type JobTimings = Pick<NonNullable<JobResult["timings"]>, "readMs" | "runMs" | "writeMs">;

/** What the processor reports a finished run to (optional: the processor runs without it). */
export interface JobTimingSink {
  timings(kind: JobKind, model: string, t: JobTimings): void;
}

type Labels = "kind" | "model";
/** From a 20 ms decode to a minutes-long generation, or a backlog of minutes. */
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** A payload write is one Redis SET of at most a few MB. */
const WRITE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/**
 * A worker's Prometheus metrics, in a registry of its own: jobs by kind, model and outcome
 * (succeeded, failed, canceled, retried), histograms of queue wait, read, run and write time,
 * and prom-client's default Node metrics. Served at `/metrics` on the worker's health port.
 */
export class WorkerMetrics implements JobTimingSink {
  readonly registry = new Registry();
  private readonly jobs: Counter<Labels | "outcome">;
  private readonly queueWait: Histogram<Labels>;
  private readonly read: Histogram<Labels>;
  private readonly run: Histogram<Labels>;
  private readonly write: Histogram<Labels>;
  private readonly batchEntries: Histogram;
  private readonly provider: Gauge<"model" | "provider">;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const labelNames = ["kind", "model"] as const;
    this.jobs = new Counter({
      name: "hybrid_worker_jobs_total",
      help: "Job attempts ended on this worker, by outcome: succeeded, failed (for good), canceled, retried (will run again).",
      labelNames: [...labelNames, "outcome"],
      registers,
    });
    this.queueWait = new Histogram({
      name: "hybrid_worker_job_queue_wait_seconds",
      help: "From a job's enqueueing to the start of this attempt (processedOn - timestamp), in seconds.",
      labelNames,
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.read = new Histogram({
      name: "hybrid_worker_job_read_seconds",
      help: "Reading a job's record and input payload from Redis, in seconds (succeeded jobs).",
      labelNames,
      buckets: WRITE_BUCKETS,
      registers,
    });
    this.run = new Histogram({
      name: "hybrid_worker_job_run_seconds",
      help: "A job's model run with its postprocessing and image/video encoding, in seconds (succeeded jobs).",
      labelNames,
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.write = new Histogram({
      name: "hybrid_worker_job_write_seconds",
      help: "Storing a job's answer bytes in Redis, in seconds (succeeded jobs).",
      labelNames,
      buckets: WRITE_BUCKETS,
      registers,
    });
    this.batchEntries = new Histogram({
      name: "hybrid_worker_batch_entries",
      help: "Batch entries per decode/encode model run (1 = a job ran alone; MAX_BATCH_SIZE > 1 batches).",
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    this.provider = new Gauge({
      name: "hybrid_worker_model_provider",
      help: "1 for the onnxruntime execution provider each model's sessions run on here (cuda, tensorrt, cpu; cuda+cpu when its sessions differ), as found when loading them.",
      labelNames: ["model", "provider"],
      registers,
    });
  }

  /** Records the provider a model's sessions run on (an info metric: the value is always 1). */
  modelProvider(model: string, provider: string): void {
    this.provider.set({ model, provider }, 1);
  }

  /** One decode/encode model run of `entries` batch entries. */
  batchRun(entries: number): void {
    this.batchEntries.observe(entries);
  }

  timings(kind: JobKind, model: string, t: JobTimings): void {
    const labels = { kind, model };
    this.read.observe(labels, t.readMs / 1000);
    this.run.observe(labels, t.runMs / 1000);
    this.write.observe(labels, t.writeMs / 1000);
  }

  /**
   * Counts the outcomes of one queue's jobs. Labels come from the queue this worker serves,
   * never from job data (other producers may put anything there).
   */
  observe(worker: Pick<Worker, "on">, kind: JobKind, model: string): void {
    const labels = { kind, model };
    // Every outcome exists from the start, at 0: rate() and alerts see the first failure.
    for (const outcome of ["succeeded", "failed", "canceled", "retried"])
      this.jobs.inc({ ...labels, outcome }, 0);
    worker.on("active", (job: Job) => {
      if (job.processedOn)
        this.queueWait.observe(labels, Math.max(0, job.processedOn - job.timestamp) / 1000);
    });
    worker.on("completed", () => this.jobs.inc({ ...labels, outcome: "succeeded" }));
    worker.on("failed", (job, err) => {
      // Only a final failure ends the job; otherwise BullMQ runs it again after its backoff.
      const outcome = !job?.finishedOn
        ? "retried"
        : parseJobError(err.message).code === "canceled"
          ? "canceled"
          : "failed";
      this.jobs.inc({ ...labels, outcome });
    });
  }

  /** Answers a scrape. */
  async serve(res: ServerResponse): Promise<void> {
    try {
      const body = await this.registry.metrics();
      res.writeHead(200, { "content-type": this.registry.contentType }).end(body);
    } catch {
      res.writeHead(500, { "content-type": "text/plain" }).end("metrics unavailable\n");
    }
  }
}
