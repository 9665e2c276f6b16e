import type { JobObject } from "@hybrid/protocol";
import type { JobEvent, StreamOptions, WaitOptions } from "./job-events.ts";

type Signal = { signal?: AbortSignal };

/** What a {@link Job} needs of the job API (`Jobs` implements it). */
export interface JobApi {
  get(id: string, options?: Signal): Promise<JobObject>;
  stream(id: string, options?: StreamOptions): AsyncGenerator<JobEvent, void, undefined>;
  wait(id: string, options?: WaitOptions): Promise<JobObject>;
  cancel(id: string, options?: Signal): Promise<JobObject>;
  /** The raw 2xx answer of `GET /v1/jobs/{id}/result`. */
  resultResponse(id: string, options?: Signal): Promise<Response>;
}

/**
 * A submitted job: its id and state at submission, and the job API bound to it. `result()`
 * reads the answer the synchronous call would have given, typed for the kind of request.
 */
export class Job<T> {
  /** The job's id (the `x-job-id` of its answers). */
  readonly id: string;

  constructor(
    private readonly jobs: JobApi,
    /** The job as the submit answered it (`status: "queued"`, usually). */
    readonly submitted: JobObject,
    private readonly read: (res: Response) => Promise<T>,
  ) {
    this.id = submitted.id;
  }

  /** The job now. */
  get(options: { signal?: AbortSignal } = {}): Promise<JobObject> {
    return this.jobs.get(this.id, options);
  }

  /** Its events, from the start (or after `lastEventId`) to the terminal one. */
  stream(options: StreamOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
    return this.jobs.stream(this.id, options);
  }

  /** Resolves with the job once it has ended (`succeeded`, `failed` or `canceled`). */
  wait(options: WaitOptions = {}): Promise<JobObject> {
    return this.jobs.wait(this.id, options);
  }

  /** Asks for it to stop; resolves with the job as it is now (watch for `canceled`). */
  cancel(options: { signal?: AbortSignal } = {}): Promise<JobObject> {
    return this.jobs.cancel(this.id, options);
  }

  /**
   * Its result. Rejects with a HybridError: 409 `job_not_finished` while it runs (call
   * {@link Job.wait} first), 409 `canceled`, the job's own error if it failed, 410
   * `payload_expired` once the result is gone (1 h by default).
   */
  async result(options: { signal?: AbortSignal } = {}): Promise<T> {
    return this.read(await this.jobs.resultResponse(this.id, options));
  }
}
