import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { latents } from "./fixtures.ts";
import { answer, decodeRequest, finished, getJob, pollJob } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

// A 4 s job lock: a dead worker's job must be running again on another worker well within 15 s.
let stack: Stack;
let queues: Queues;
beforeAll(async () => {
  stack = await startStack({}, { worker: { LOCK_DURATION_MS: "4000", SHUTDOWN_GRACE_MS: "300" } });
  queues = new Queues(REDIS_URL, stack.prefix);
});
afterAll(async () => {
  await queues?.close();
  await stack?.stop();
});

/** ~2 s on the tiny model. */
const long = { tensor: latents([3, 4, 160, 160], "float32", 11).tensor, output_type: "pt" as const };

const exited = (p: {
  exitCode: number | null;
  signalCode: string | null;
  once: (e: "exit", f: () => void) => void;
}) =>
  p.exitCode !== null || p.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => p.once("exit", r));

/** The newest job of the stack (a sync request does not tell its id until it answers). */
async function newestJob(): Promise<JobObject | undefined> {
  const list = (await (await fetch(`${stack.baseUrl}/v1/jobs?limit=1`)).json()) as { data: JobObject[] };
  return list.data[0];
}

describe("processes that die or stop in the middle of a job", () => {
  it("kill -9: the job runs again on another worker within 15 s of it serving, and the client gets one correct answer", async () => {
    const expected = await answer(await decodeRequest(stack.baseUrl, long));
    expect(expected.status).toBe(200);
    const before = (await newestJob())?.id;

    const client = decodeRequest(stack.baseUrl, long).then(answer);
    const job = await newestRunning(before);
    const decodeQueue = queues.queue(jobCatalog.queue("decode", "sd-v1-tiny"));
    const processedBy = async () => (await decodeQueue.getJob(job.id))?.processedBy;
    const firstWorker = await processedBy();
    expect(firstWorker).toBeTruthy();
    const victim = stack.worker;
    victim.kill("SIGKILL");
    await exited(victim);
    await stack.addWorker();
    // Counted from when the new worker serves the queue (its start-up is no part of recovery):
    // the dead worker's lock (4 s) lapses and the job is taken again. 15 s leaves room for a
    // loaded machine; a job left for a much later stalled check still fails it.
    await expect.poll(processedBy, { timeout: 15_000, interval: 50 }).not.toBe(firstWorker);

    const got = await client;
    // Compared as buffers: a deep equal of 29 MB walks every byte as a property.
    expect({ ...got, bytes: null }).toEqual({ ...expected, bytes: null });
    expect(got.bytes.equals(expected.bytes)).toBe(true);
    const done = await pollJob(stack.baseUrl, job.id, finished);
    expect(done.status).toBe("succeeded");
    // The first try died with its worker: another worker ran it again, and it was answered once.
    const secondWorker = await processedBy();
    expect(secondWorker).toBeTruthy();
    expect(secondWorker).not.toBe(firstWorker);
  });

  it("SIGTERM: a job outliving the grace period is handed back at once, not after its lock lapses", async () => {
    const worker = stack.workers[stack.workers.length - 1]!;
    const res = await decodeRequest(stack.baseUrl, long, { Prefer: "respond-async" });
    const job = (await res.json()) as JobObject;
    await pollJob(stack.baseUrl, job.id, (j) => j.status === "running");
    worker.kill("SIGTERM");
    await exited(worker);
    // Queued as soon as the worker is gone: it handed the job back before exiting (after the
    // 300 ms grace), neither finishing the run first nor leaving it to its 4 s lock.
    expect((await getJob(stack.baseUrl, job.id)).status).toBe("queued");
    await stack.addWorker();
    const done = await pollJob(stack.baseUrl, job.id, finished, 15_000);
    expect(done.status).toBe("succeeded");
  });

  it("an API on SIGTERM lets a sync request in flight get its answer, then exits", async () => {
    const client = decodeRequest(stack.baseUrl, long).then(answer);
    await newestRunning();
    stack.api.kill("SIGTERM");
    const got = await client;
    expect(got.status).toBe(200);
    expect(got.shape).toBe("[3, 3, 1280, 1280]");
    await exited(stack.api);
    expect(stack.api.exitCode).toBe(0);
  });
});

/** The newest job (other than `before`) once it is running. */
function newestRunning(before?: string): Promise<JobObject> {
  return vi.waitFor(
    async () => {
      const job = await newestJob();
      expect(job?.id).not.toBe(before);
      expect(job?.status).toBe("running");
      return job!;
    },
    { timeout: 20_000, interval: 20 },
  );
}
