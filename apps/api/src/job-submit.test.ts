import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import type { DecodeJob } from "@hybrid/protocol";
import {
  createRedis,
  JobProducer,
  JobStore,
  jobCatalog,
  PayloadStore,
  Queues,
  ReplyListener,
  WorkerDirectory,
} from "@hybrid/queue";
import { sdV1Model } from "@hybrid/testing";
import { useTestRedis } from "@hybrid/testing/vitest";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "./auth.ts";
import { errorHandler } from "./errors.ts";
import { type SubmitDeps, submitJob } from "./job-submit.ts";
import { findModel } from "./model-lookup.ts";
import { KeyRateLimiter } from "./rate-limit.ts";

const { url, prefix, redis } = useTestRedis("api-submit");
const settings = { attempts: 1, retentionSeconds: 60, webhookAttempts: 1, webhookBackoffMs: 100 };
const queues = new Queues(url, prefix);
const store = new PayloadStore(redis, prefix, 60);
const jobs = new JobStore(redis, queues, store, { prefix, catalog: settings });
const replies = new ReplyListener(createRedis(url, "blocking"), prefix, store);

/** The real producer, whose next admission check can be held (a step of job creation). */
class GatedProducer extends JobProducer {
  hold: { reached: () => void; opened: Promise<void> } | null = null;
  override async admit(queue: string, jobId: string, limit: number) {
    const h = this.hold;
    this.hold = null;
    if (h) {
      h.reached();
      await h.opened;
    }
    return super.admit(queue, jobId, limit);
  }
}
const producer = new GatedProducer(queues, settings, replies);

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened };
}

const model = "submit-model";
const queue = jobCatalog.queue("decode", model);
const deps: SubmitDeps = {
  store,
  jobs,
  producer,
  limiter: new KeyRateLimiter(redis, prefix),
  requestTimeoutMs: 60_000,
  maxBacklog: 100,
  idempotencyTtlSeconds: 60,
  webhookAllowedHosts: [],
  canSignWebhooks: () => false,
  stopping: new AbortController().signal,
};
const decode: Omit<DecodeJob, "input"> = {
  kind: "decode",
  model,
  shape: [1, 4, 8, 8],
  dtype: "float32",
  scaling: null,
  packed: null,
  output: { kind: "uint8" },
};

let port = 0;
let closed = 0;
let close: () => Promise<unknown> = async () => {};
beforeAll(async () => {
  const app = express();
  app.use((_req, res, next) => {
    res.locals.principal = { owner: "o1", key: null } satisfies Principal;
    res.on("close", () => closed++);
    next();
  });
  app.post("/decode", express.raw({ type: () => true }), (req, res) =>
    submitJob(deps, req, res, decode, req.body as Buffer),
  );
  app.use(errorHandler);
  const server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  port = (server.address() as AddressInfo).port;
  close = () => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  };
});
afterAll(async () => {
  await close();
  replies.close();
  await queues.close();
});

const poll = { timeout: 5_000, interval: 20 };

describe("a sync client that hangs up while its job is being created", () => {
  it("gets the job withdrawn instead of run for nobody (no worker serves this queue)", async () => {
    const reached = gate();
    const held = gate();
    producer.hold = { reached: reached.open, opened: held.opened };
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise((r) => socket.once("connect", r));
    const body = Buffer.alloc(4 * 8 * 8 * 4);
    socket.write(`POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body);
    await reached.opened;
    const before = closed;
    socket.destroy();
    await expect.poll(() => closed - before, poll).toBe(1);
    held.open();
    // Created after the hang-up, then withdrawn: the job says canceled, nothing waits in its queue.
    const statuses = async () => (await jobs.views.list("o1", 10)).jobs.map((j) => j.status);
    await expect.poll(statuses, poll).toEqual(["canceled"]);
    expect(await queues.queue(queue).getWaitingCount()).toBe(0);
  });
});

/** One raw request (headers exactly as given: fetch would refuse some, curl drops empty ones). */
async function rawPost(headers: string[]): Promise<{ status: number; body: string }> {
  const socket = connect(port, "127.0.0.1");
  await new Promise((r) => socket.once("connect", r));
  const body = Buffer.alloc(4 * 8 * 8 * 4);
  socket.write(
    [
      "POST /decode HTTP/1.1",
      "Host: 127.0.0.1",
      "Connection: close",
      `Content-Length: ${body.length}`,
      ...headers,
      "",
      "",
    ].join("\r\n"),
  );
  socket.write(body);
  let text = "";
  for await (const chunk of socket) text += chunk.toString();
  return { status: Number(text.split(" ")[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) };
}

describe("Idempotency-Key", () => {
  it.each([
    ["empty", ["Idempotency-Key: "]],
    ["blank", ["Idempotency-Key:    "]],
    ["with a space inside", ["Idempotency-Key: two words"]],
    ["longer than 255", [`Idempotency-Key: ${"k".repeat(256)}`]],
    ["sent twice", ["Idempotency-Key: a", "Idempotency-Key: b"]],
    ["not ASCII", ["Idempotency-Key: caf\u00e9"]],
  ])("%s: 400 invalid_parameter, and no job", async (_name, headers) => {
    const before = await queues.queue(queue).count();
    const res = await rawPost(headers);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: "invalid_parameter" });
    expect(await queues.queue(queue).count()).toBe(before);
  });
});

describe("x-wait-for-model", () => {
  it("stops waiting for a restarting model once the client is gone", async () => {
    const directory = new WorkerDirectory(redis, prefix);
    const m = sdV1Model({ id: "restarting" });
    const worker = { workerId: "w1", hostname: "h", pid: 1, startedAt: new Date().toISOString() };
    await directory.announce({ ...worker, models: [m] });
    await directory.withdraw("w1");
    let gone = false;
    // The request timeout is far beyond this test's: only noticing the hang-up ends the wait.
    const lookup = findModel(
      { directory, modelLoadingSeconds: 5, requestTimeoutMs: 600_000 },
      m.id,
      true,
      () => gone,
    );
    gone = true;
    await expect(lookup).rejects.toMatchObject({ code: "invalid_request" });
  });
});
