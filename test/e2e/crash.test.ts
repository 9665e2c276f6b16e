import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latents } from "./fixtures.ts";
import { answer, decodeRequest, finished, pollJob } from "./jobs-client.ts";
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
  it("kill -9: the job runs again on another worker within 15 s, and the client gets one correct answer", async () => {
    const expected = await answer(await decodeRequest(stack.baseUrl, long));
    expect(expected.status).toBe(200);
    const before = (await newestJob())?.id;

    const client = decodeRequest(stack.baseUrl, long).then(answer);
    let job: JobObject | undefined;
    const until = Date.now() + 20_000;
    while (Date.now() < until) {
      job = await newestJob();
      if (job && job.id !== before && job.status === "running") break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(job?.status).toBe("running");
    const decodeQueue = queues.queue(jobCatalog.queue("decode", "sd-v1-tiny"));
    const firstWorker = (await decodeQueue.getJob(job!.id))?.processedBy;
    expect(firstWorker).toBeTruthy();
    const victim = stack.worker;
    victim.kill("SIGKILL");
    await exited(victim);
    const killedAt = Date.now();
    await stack.addWorker();

    const got = await client;
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    // Compared as buffers: a deep equal of 29 MB walks every byte as a property.
    expect({ ...got, bytes: null }).toEqual({ ...expected, bytes: null });
    expect(got.bytes.equals(expected.bytes)).toBe(true);
    const done = await pollJob(stack.baseUrl, job!.id, finished);
    expect(done.status).toBe("succeeded");
    // The first try died with its worker: another worker ran it again, and it was answered once.
    const secondWorker = (await decodeQueue.getJob(job!.id))?.processedBy;
    expect(secondWorker).toBeTruthy();
    expect(secondWorker).not.toBe(firstWorker);
  });

  it("SIGTERM: a job outliving the grace period is handed back at once, not after its lock lapses", async () => {
    const worker = stack.workers[stack.workers.length - 1]!;
    const res = await decodeRequest(stack.baseUrl, long, { Prefer: "respond-async" });
    const job = (await res.json()) as JobObject;
    await pollJob(stack.baseUrl, job.id, (j) => j.status === "running");
    const t0 = Date.now();
    worker.kill("SIGTERM");
    await exited(worker);
    expect(Date.now() - t0).toBeLessThan(3000);
    const handedBack = await pollJob(stack.baseUrl, job.id, (j) => j.status !== "running", 3000);
    expect(handedBack.status).toBe("queued");
    await stack.addWorker();
    const done = await pollJob(stack.baseUrl, job.id, finished, 15_000);
    expect(done.status).toBe("succeeded");
  });

  it("an API on SIGTERM lets a sync request in flight get its answer, then exits", async () => {
    const client = decodeRequest(stack.baseUrl, long).then(answer);
    await pollJob(stack.baseUrl, (await newestRunning())!.id, (j) => j.status === "running");
    stack.api.kill("SIGTERM");
    const got = await client;
    expect(got.status).toBe(200);
    expect(got.shape).toBe("[3, 3, 1280, 1280]");
    await exited(stack.api);
    expect(stack.api.exitCode).toBe(0);
  });
});

/** The newest job once it is running. */
async function newestRunning(): Promise<JobObject | undefined> {
  const until = Date.now() + 20_000;
  while (Date.now() < until) {
    const job = await newestJob();
    if (job?.status === "running") return job;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}
