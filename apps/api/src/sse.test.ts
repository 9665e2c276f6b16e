import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import {
  createRedis,
  JobEventHub,
  type JobMeta,
  JobStore,
  jobCatalog,
  PayloadStore,
  Queues,
} from "@hybrid/queue";
import { useTestRedis } from "@hybrid/testing/vitest";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "./auth.ts";
import { errorHandler } from "./errors.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { StreamSlots } from "./sse.ts";

const { url, prefix, redis } = useTestRedis("api-sse");
const settings = { attempts: 1, retentionSeconds: 60, webhookAttempts: 1, webhookBackoffMs: 100 };
const queues = new Queues(url, prefix);
const store = new PayloadStore(redis, prefix, 60);
const jobs = new JobStore(redis, queues, store, { prefix, catalog: settings });

/** A promise the test resolves by hand: holds a step of the stream until the client is gone. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened };
}

/** The real hub, whose next `listen` can be held at a gate (the window a hang-up used to leak in). */
class GatedHub extends JobEventHub {
  hold: { reached: () => void; opened: Promise<void> } | null = null;
  override async listen(...args: Parameters<JobEventHub["listen"]>) {
    const off = await super.listen(...args);
    const h = this.hold;
    this.hold = null;
    if (h) {
      h.reached();
      await h.opened;
    }
    return off;
  }
}
const hub = new GatedHub(createRedis(url, "blocking"), prefix);
const slots = new StreamSlots(3);

let arrivals = 0;
let base = "";
let port = 0;
let close: () => Promise<unknown> = async () => {};
beforeAll(async () => {
  const app = express();
  // The owner is whoever the test says (the auth middleware is tested on its own).
  app.use((req, res, next) => {
    const owner = String(req.headers["x-owner"] ?? "k1");
    res.locals.principal = { owner, key: null } satisfies Principal;
    arrivals++;
    next();
  });
  app.use(jobRoutes({ jobs, hub, store, sse: { keepAliveMs: 50, staleMs: 10_000, slots } }));
  app.use(errorHandler);
  const server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  close = () => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  };
});
afterAll(async () => {
  await close();
  hub.close();
  await queues.close();
});

/** A job nobody serves: it stays queued, so its streams never end by themselves. */
async function queuedJob(owner: string): Promise<JobMeta> {
  const model = "sse-model";
  const meta: JobMeta = {
    id: randomUUID(),
    kind: "decode",
    model,
    queue: jobCatalog.queue("decode", model),
    owner,
    createdAt: Date.now(),
    webhook: null,
    canceledAt: null,
    logged: true,
    capped: false,
    imageAsJson: false,
  };
  await jobs.create(meta);
  return meta;
}

/** Sends the request line and headers on a raw socket; resolves with a function that drops it. */
async function rawGet(path: string): Promise<() => void> {
  const socket = connect(port, "127.0.0.1");
  await new Promise((r) => socket.once("connect", r));
  socket.on("error", () => {});
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-owner: k1\r\n\r\n`);
  return () => socket.destroy();
}

const poll = { timeout: 5_000, interval: 20 };

describe("GET /v1/jobs/{id}/events and hang-ups", () => {
  it("leaves no listener or keep-alive timer behind when the client leaves while the stream subscribes", async () => {
    const job = await queuedJob("k1");
    const reached = gate();
    const held = gate();
    hub.hold = { reached: reached.open, opened: held.opened };
    const drop = await rawGet(`/v1/jobs/${job.id}/events`);
    await reached.opened;
    drop();
    // The server saw the hang-up (the stream's slot is given back on close) ...
    await expect.poll(() => slots.size, poll).toBe(0);
    // ... before its subscription completed: then nothing of the stream may stay.
    held.open();
    await expect.poll(() => hub.listenerCount, poll).toBe(0);
  });

  it("leaves nothing behind for clients that leave right after connecting", async () => {
    const job = await queuedJob("k1");
    const before = arrivals;
    const drops = await Promise.all(Array.from({ length: 20 }, () => rawGet(`/v1/jobs/${job.id}/events`)));
    await expect.poll(() => arrivals - before, poll).toBe(20);
    for (const drop of drops) drop();
    await expect.poll(() => slots.size, poll).toBe(0);
    await expect.poll(() => hub.listenerCount, poll).toBe(0);
  });

  it("ends the stream's listener when the client leaves a live stream", async () => {
    const job = await queuedJob("k1");
    const abort = new AbortController();
    const res = await fetch(`${base}/v1/jobs/${job.id}/events`, { signal: abort.signal });
    expect(res.status).toBe(200);
    expect(hub.listenerCount).toBe(1);
    abort.abort();
    await expect.poll(() => hub.listenerCount, poll).toBe(0);
    await expect.poll(() => slots.size, poll).toBe(0);
  });
});

describe("concurrent streams per key", () => {
  it("refuses the (N+1)th open stream of a key with 429, not other keys', and frees a slot on close", async () => {
    const job = await queuedJob("k1");
    const other = await queuedJob("k2");
    const open = Array.from({ length: 3 }, () => new AbortController());
    const streams = await Promise.all(
      open.map((a) => fetch(`${base}/v1/jobs/${job.id}/events`, { signal: a.signal })),
    );
    expect(streams.map((r) => r.status)).toEqual([200, 200, 200]);

    const refused = await fetch(`${base}/v1/jobs/${job.id}/events`);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(await refused.json()).toMatchObject({ code: "rate_limited" });

    const k2 = new AbortController();
    const theirs = await fetch(`${base}/v1/jobs/${other.id}/events`, {
      headers: { "x-owner": "k2" },
      signal: k2.signal,
    });
    expect(theirs.status).toBe(200);

    open[0]?.abort();
    await expect.poll(() => slots.size, poll).toBe(3);
    const again = new AbortController();
    const next = await fetch(`${base}/v1/jobs/${job.id}/events`, { signal: again.signal });
    expect(next.status).toBe(200);

    for (const a of [...open, k2, again]) a.abort();
    await expect.poll(() => slots.size, poll).toBe(0);
    await expect.poll(() => hub.listenerCount, poll).toBe(0);
  });

  it("counts a refused lookup (404) only while it is answered", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${base}/v1/jobs/${randomUUID()}/events`);
      expect(r.status).toBe(404);
    }
    await expect.poll(() => slots.size, poll).toBe(0);
  });
});
