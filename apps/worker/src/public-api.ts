// The worker app's one door for code outside it (benches, tests of the whole stack): its
// composition, the job runner's types and its metrics. The entry script is `index.ts`.
export { type Answer, modelRuns, type Run, type RunContext, type Runs, type Runtimes } from "./job-runner.ts";
export { WorkerMetrics } from "./metrics.ts";
export { type RunningWorker, startWorker, type WorkerDeps } from "./start-worker.ts";
