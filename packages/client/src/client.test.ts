import type { JobObject, ModelEntry } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { HybridClient } from "./client.ts";
import { HybridError, parseRetryAfter } from "./errors.ts";

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A fetch that records each request and answers from `reply`, in order. */
function fakeFetch(...replies: ((call: Call, signal?: AbortSignal) => Response)[]) {
  const calls: Call[] = [];
  const fetch = async (input: string | URL | Request, init: RequestInit = {}) => {
    const call: Call = {
      url: String(input),
      method: init.method ?? "GET",
      headers: Object.fromEntries(new Headers(init.headers).entries()),
      body: init.body,
    };
    calls.push(call);
    const reply = replies.shift();
    if (!reply) throw new Error(`unexpected request ${call.method} ${call.url}`);
    init.signal?.throwIfAborted();
    return reply(call, init.signal ?? undefined);
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

const job = (status: JobObject["status"], id = "j1") => ({ id, status }) as JobObject;
const json =
  (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", ...headers },
    });
const sse = (text: string) => () => new Response(text, { headers: { "content-type": "text/event-stream" } });
const event = (id: string, name: string, status: JobObject["status"]) =>
  `id: ${id}\nevent: ${name}\ndata: ${JSON.stringify(job(status))}\n\n`;

describe("HybridClient", () => {
  it("lists the models: the entries of GET /v1/models as the API answers them", async () => {
    const entry: ModelEntry = {
      id: "sd-v1-tiny",
      family: "sd-v1",
      task: "vae",
      operations: ["decode"],
      latent_channels: 4,
      latent_rank: 4,
      spatial_compression: 8,
      scaling_factor: 0.18215,
      shift_factor: null,
      dtype: "float32",
      tasks: ["vae"],
      endpoints: { decode: "/v1/vae/sd-v1-tiny/decode" },
    };
    const { fetch, calls } = fakeFetch(json({ object: "list", data: [entry] }));
    const models = await new HybridClient({ baseUrl: "http://h:1", fetch }).models();
    expect(models).toEqual([entry]);
    expect([calls[0]!.method, calls[0]!.url, calls[0]!.headers.accept]).toEqual([
      "GET",
      "http://h:1/v1/models",
      "application/json",
    ]);
  });

  it("sends the API key, base path and call options", async () => {
    const { fetch, calls } = fakeFetch(
      () =>
        new Response(new Uint8Array([0xff, 0xd8, 0xff]), {
          headers: { "content-type": "image/jpeg", "x-seed": "3" },
        }),
    );
    const client = new HybridClient({ baseUrl: "http://h:1/prefix/", apiKey: "hik_x", fetch });
    const out = await client.textToImage(
      "sd tiny",
      { prompt: "p", seed: 3 },
      { idempotencyKey: "k-1", useCache: false, waitForModel: true, headers: { "x-extra": "1" } },
    );
    expect(out.seed).toBe(3);
    expect(calls[0]!.url).toBe("http://h:1/prefix/v1/text-to-image/sd%20tiny");
    expect(calls[0]!.headers).toMatchObject({
      authorization: "Bearer hik_x",
      "idempotency-key": "k-1",
      "x-use-cache": "false",
      "x-wait-for-model": "true",
      "x-extra": "1",
      accept: "image/jpeg",
    });
  });

  it("throws HybridError with the code, status, Retry-After and job id", async () => {
    const { fetch } = fakeFetch(
      json({ error: "Slow down.", code: "rate_limited" }, 429, { "retry-after": "7" }),
      json({ error: "Timed out.", code: "timeout", job_id: "j9" }, 504),
      () => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" }),
    );
    const client = new HybridClient({ baseUrl: "http://h", fetch });
    const errors: HybridError[] = [];
    for (let i = 0; i < 3; i++)
      errors.push((await client.jobs.get("x").catch((e: HybridError) => e)) as HybridError);
    expect(errors.every((e) => e instanceof HybridError)).toBe(true);
    expect(errors[0]).toMatchObject({
      status: 429,
      code: "rate_limited",
      message: "Slow down.",
      retryAfter: 7,
    });
    expect(errors[1]).toMatchObject({ status: 504, code: "timeout", jobId: "j9" });
    expect(errors[2]).toMatchObject({
      status: 502,
      code: "unexpected_response",
      body: "<html>bad gateway</html>",
    });
    expect(errors[2]!.message).toMatch(/502 Bad Gateway/);
  });

  it("parses Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("120")).toBe(120);
    expect(
      parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT")),
    ).toBe(10);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe("jobs", () => {
  it("submits with Prefer: respond-async, an idempotency key and a webhook", async () => {
    const { fetch, calls } = fakeFetch(json(job("queued"), 202));
    const client = new HybridClient({ baseUrl: "http://h", fetch });
    const handle = await client.jobs.submitEncode(
      "m",
      new Uint8Array([1]),
      { sample: true },
      {
        idempotencyKey: "abc",
        webhook: { url: "https://hooks.example/x", events: ["start", "completed"] },
      },
    );
    expect(handle.id).toBe("j1");
    expect(handle.submitted.status).toBe("queued");
    expect(calls[0]!.url).toBe("http://h/v1/vae/m/encode?sample=True");
    expect(calls[0]!.headers).toMatchObject({
      prefer: "respond-async",
      "idempotency-key": "abc",
      "x-webhook-url": "https://hooks.example/x",
      "x-webhook-events": "start,completed",
    });
  });

  it("lists with limit and cursor, and cancels", async () => {
    const { fetch, calls } = fakeFetch(
      json({ object: "list", data: [], next_cursor: null }),
      json(job("canceled"), 202),
    );
    const client = new HybridClient({ baseUrl: "http://h", fetch });
    expect((await client.jobs.list({ limit: 5, cursor: "c/1" })).next_cursor).toBeNull();
    expect((await client.jobs.cancel("j/1")).status).toBe("canceled");
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      "GET http://h/v1/jobs?limit=5&cursor=c%2F1",
      "POST http://h/v1/jobs/j%2F1/cancel",
    ]);
  });

  it("resumes a stream that ends early after the last event seen", async () => {
    const { fetch, calls } = fakeFetch(
      sse(`: hi\n\n${event("1-0", "queued", "queued")}${event("2-0", "started", "running")}`),
      sse(`${event("3-0", "progress", "running")}${event("4-0", "succeeded", "succeeded")}`),
    );
    const client = new HybridClient({ baseUrl: "http://h", fetch });
    const seen = [];
    for await (const e of client.jobs.stream("j1")) seen.push(`${e.id} ${e.event} ${e.job.status}`);
    expect(seen).toEqual([
      "1-0 queued queued",
      "2-0 started running",
      "3-0 progress running",
      "4-0 succeeded succeeded",
    ]);
    expect(calls[0]!.headers["last-event-id"]).toBeUndefined();
    expect(calls[1]!.headers["last-event-id"]).toBe("2-0");
    expect(calls[1]!.headers.accept).toBe("text/event-stream");
  });

  it("resumes after a connection drops mid-stream, and checks the job when a stream brings nothing", async () => {
    let pulls = 0;
    const broken = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            if (pulls++ === 0) controller.enqueue(new TextEncoder().encode(event("1-0", "queued", "queued")));
            else controller.error(new TypeError("terminated"));
          },
        }),
      );
    // Dropped after one event; then a stream that ends with nothing (the job is checked: still
    // running); then the rest.
    const { fetch, calls } = fakeFetch(
      broken,
      sse("retry: 1\n\n"),
      json(job("running")),
      sse(event("2-0", "failed", "failed")),
    );
    const client = new HybridClient({ baseUrl: "http://h", fetch });
    const events = [];
    for await (const e of client.jobs.stream("j1")) events.push(e.event);
    expect(events).toEqual(["queued", "failed"]);
    expect(calls.map((c) => c.headers["last-event-id"] ?? c.url)).toEqual([
      "http://h/v1/jobs/j1/events",
      "1-0",
      "http://h/v1/jobs/j1",
      "1-0",
    ]);
  });

  it("ends at once when resumed after the terminal event, and gives up on a 404", async () => {
    const { fetch } = fakeFetch(
      sse(""),
      json(job("succeeded")),
      json({ error: "No job j2.", code: "not_found" }, 404),
    );
    const client = new HybridClient({ baseUrl: "http://h", fetch });
    const events = [];
    for await (const e of client.jobs.stream("j1", { lastEventId: "4-0" })) events.push(e);
    expect(events).toEqual([]);
    await expect(client.jobs.wait("j2")).rejects.toMatchObject({ code: "not_found", status: 404 });
  });

  it("waits for the terminal event, and times out with a TimeoutError", async () => {
    const endless = (_: Call, signal?: AbortSignal) =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode(event("1-0", "started", "running")));
            signal?.addEventListener("abort", () => controller.error(signal.reason));
          },
        }),
      );
    const { fetch } = fakeFetch(
      sse(event("1-0", "queued", "queued") + event("2-0", "canceled", "canceled")),
      endless,
    );
    const client = new HybridClient({ baseUrl: "http://h", fetch });
    expect((await client.jobs.wait("j1")).status).toBe("canceled");
    const started = Date.now();
    await expect(client.jobs.wait("j1", { timeoutMs: 50 })).rejects.toMatchObject({ name: "TimeoutError" });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
