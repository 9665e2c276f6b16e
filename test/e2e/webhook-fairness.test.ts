// Webhooks under abuse, end to end (a real API + worker, keys made with the real `pnpm keys` CLI):
// host lookups whose nameserver never answers must not slow other keys' requests, and a tenant
// whose receiver hangs must not hold other tenants' deliveries.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { type DnsServer, startDnsServer } from "@hybrid/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { repoRoot } from "../../scripts/lib.ts";
import { latents } from "./fixtures.ts";
import { decodeRequest } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

const run = promisify(execFile);
const small = () => ({ tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" as const });
const errorOf = async (res: Response) => (await res.json()) as { code: string; error: string };

let tmp: string;
let keysFile: string;
const keys: Record<"alice" | "bob" | "carol" | "dave", string> = { alice: "", bob: "", carol: "", dave: "" };
const as = (name: keyof typeof keys) => ({ Authorization: `Bearer ${keys[name]}` });
const asyncAs = (name: keyof typeof keys) => ({ ...as(name), Prefer: "respond-async" });

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "e2e-webhook-fairness-"));
  keysFile = join(tmp, "keys.json");
  const made: [keyof typeof keys, string[]][] = [
    ["alice", []],
    ["bob", []],
    ["carol", ["--rate-per-minute", "2"]],
    ["dave", ["--rate-per-minute", "2"]],
  ];
  for (const [name, flags] of made) {
    const { stdout } = await run(
      process.execPath,
      ["--conditions=source", "--import", "tsx", "apps/api/src/keys-cli.ts", "create", name, ...flags],
      { cwd: repoRoot, env: { ...process.env, API_KEYS_FILE: keysFile } },
    );
    keys[name] = stdout.trimEnd().split("\n").at(-1)!;
  }
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("webhook host lookups whose nameserver never answers", () => {
  let dns: DnsServer;
  let stack: Stack;
  let receiver: Server;
  let receiverPort: number;

  beforeAll(async () => {
    dns = await startDnsServer("silent");
    receiver = createServer((_req, res) => res.writeHead(204).end());
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    receiverPort = (receiver.address() as { port: number }).port;
    stack = await startStack(
      {},
      {
        api: {
          API_KEYS_FILE: keysFile,
          WEBHOOK_DNS_SERVERS: dns.address,
          // Long enough for the other key's requests below to run while the lookups hang.
          WEBHOOK_DNS_TIMEOUT_MS: "8000",
          WEBHOOK_DNS_MAX_LOOKUPS_PER_KEY: "16",
          WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
        },
      },
    );
  });
  afterAll(async () => {
    await stack?.stop();
    await dns?.close();
    await new Promise((r) => receiver?.close(r));
  });

  it("keeps answering other keys while 16 lookups hang, then refuses the 16 with 400 invalid_webhook", async () => {
    const names = Array.from({ length: 16 }, (_, i) => `h${i}.stall.example`);
    let settled = 0;
    const stalled = names.map((name) =>
      decodeRequest(stack.baseUrl, small(), {
        ...asyncAs("alice"),
        "X-Webhook-Url": `https://${name}/hook`,
      }).finally(() => settled++),
    );
    // Every one of the 16 is waiting on the nameserver.
    await vi.waitFor(
      () => {
        const asked = new Set(dns.questions.filter((q) => q.startsWith("A ")).map((q) => q.slice(2)));
        if (!names.every((n) => asked.has(n)))
          throw new Error("not every lookup has reached the nameserver yet");
      },
      { timeout: 30_000, interval: 25 },
    );

    // Meanwhile: another key's decodes are answered (auth, payloads, Redis, the worker) ...
    for (let i = 0; i < 10; i++) {
      const res = await decodeRequest(stack.baseUrl, small(), as("bob"));
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    // ... a webhook to a host that needs no lookup is admitted ...
    const hooked = await decodeRequest(stack.baseUrl, small(), {
      ...asyncAs("bob"),
      "X-Webhook-Url": `http://127.0.0.1:${receiverPort}/ok`,
    });
    expect(hooked.status).toBe(202);
    // ... and the same key's 17th lookup is refused at once, over its cap.
    const over = await decodeRequest(stack.baseUrl, small(), {
      ...asyncAs("alice"),
      "X-Webhook-Url": "https://h16.stall.example/hook",
    });
    expect(over.status).toBe(429);
    expect(over.headers.get("retry-after")).toBe("1");
    expect((await errorOf(over)).code).toBe("rate_limited");
    // All of that happened while the 16 were still in flight.
    expect(settled).toBe(0);

    for (const res of await Promise.all(stalled)) {
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/json");
      const body = await errorOf(res);
      expect(body.code).toBe("invalid_webhook");
      expect(body.error).toMatch(/could not be resolved: its nameservers did not answer in time/);
      expect(res.headers.get("x-job-id")).toBeNull();
    }
  });

  it("counts a webhook submission against the key's rate before its lookup, and only once", async () => {
    // carol: 2 a minute. The third submission is refused before any lookup is made.
    const before = dns.questions.length;
    const tries = await Promise.all(
      ["c0", "c1"].map((n) =>
        decodeRequest(stack.baseUrl, small(), {
          ...asyncAs("carol"),
          "X-Webhook-Url": `https://${n}.stall.example/`,
        }),
      ),
    );
    for (const res of tries) expect(res.status).toBe(400);
    const third = await decodeRequest(stack.baseUrl, small(), {
      ...asyncAs("carol"),
      "X-Webhook-Url": "https://c2.stall.example/",
    });
    expect(third.status).toBe(429);
    expect((await errorOf(third)).code).toBe("rate_limited");
    expect(dns.questions.slice(before).some((q) => q.includes("c2.stall.example"))).toBe(false);

    // dave: 2 a minute, both admitted with a webhook: the early count is not counted again.
    for (let i = 0; i < 2; i++) {
      const res = await decodeRequest(stack.baseUrl, small(), {
        ...asyncAs("dave"),
        "X-Webhook-Url": `http://127.0.0.1:${receiverPort}/dave`,
      });
      expect(res.status).toBe(202);
      await res.json();
    }
    expect((await decodeRequest(stack.baseUrl, small(), asyncAs("dave"))).status).toBe(429);
  });
});

describe("a tenant whose receiver hangs", () => {
  let stack: Stack;
  let receiver: Server;
  let port: number;
  const hanging: ServerResponse[] = [];
  const delivered: { path: string; job: JobObject }[] = [];
  const failedCalls: string[] = [];

  beforeAll(async () => {
    receiver = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (req.url?.startsWith("/hang")) {
          hanging.push(res);
          return;
        }
        if (req.url?.startsWith("/fail")) {
          failedCalls.push(req.url);
          res.writeHead(500).end();
          return;
        }
        delivered.push({
          path: req.url ?? "",
          job: JSON.parse(Buffer.concat(chunks).toString()) as JobObject,
        });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    port = (receiver.address() as { port: number }).port;
    stack = await startStack(
      { WEBHOOK_BACKOFF_MS: "100" },
      {
        api: {
          API_KEYS_FILE: keysFile,
          WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
          // Four delivery slots, two per owner; a hung delivery holds its slot for two minutes.
          WEBHOOK_CONCURRENCY: "4",
          WEBHOOK_CONCURRENCY_PER_OWNER: "2",
          WEBHOOK_TIMEOUT_MS: "120000",
          // A circuit opens after two failures in a row and stays open for a minute.
          WEBHOOK_BREAKER_FAILURES: "2",
          WEBHOOK_BREAKER_COOLDOWN_MS: "60000",
        },
      },
    );
  });
  afterAll(async () => {
    // Answered first, so the API's shutdown does not wait out their two-minute timeout.
    for (const res of hanging) res.writeHead(200).end();
    await stack?.stop();
    receiver?.closeAllConnections();
    await new Promise((r) => receiver?.close(r));
  });

  it("holds only its own share of the delivery slots: another key's `completed` webhook still arrives", async () => {
    for (let i = 0; i < 6; i++) {
      const res = await decodeRequest(stack.baseUrl, small(), {
        ...asyncAs("alice"),
        "X-Webhook-Url": `http://127.0.0.1:${port}/hang/${i}`,
      });
      expect(res.status).toBe(202);
      await res.json();
    }
    // alice's receiver holds two deliveries (her share), never answering.
    await vi.waitFor(
      () => {
        if (hanging.length < 2) throw new Error("alice's receiver has not been called twice yet");
      },
      { timeout: 30_000, interval: 25 },
    );

    const res = await decodeRequest(stack.baseUrl, small(), {
      ...asyncAs("bob"),
      "X-Webhook-Url": `http://127.0.0.1:${port}/ok/bob`,
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobObject;
    const got = await vi.waitFor(
      () => {
        const d = delivered.find((x) => x.path === "/ok/bob");
        if (!d) throw new Error("bob's webhook has not arrived");
        return d;
      },
      { timeout: 30_000, interval: 25 },
    );
    expect(got.job).toMatchObject({ id, status: "succeeded" });
    // alice never had more than her two deliveries in flight.
    expect(hanging.length).toBe(2);
  });

  it("postpones a key's deliveries to a host that keeps failing it (no attempt used), not another key's", async () => {
    const queues = new Queues(REDIS_URL, stack.prefix);
    try {
      const res = await decodeRequest(stack.baseUrl, small(), {
        ...asyncAs("bob"),
        "X-Webhook-Url": `http://127.0.0.1:${port}/fail/bob`,
      });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as JobObject;
      // Two attempts fail (500); the third finds the circuit open and is put off for the cool-down
      // without being sent: started three times, two attempts used, waiting as a delayed job.
      const postponed = await vi.waitFor(
        async () => {
          const q = queues.queue(jobCatalog.webhookQueue);
          const mine = (await q.getJobs(["delayed"])).find(
            (j) => (j.data as { jobId?: string }).jobId === id,
          );
          if (mine?.attemptsMade !== 2 || mine.attemptsStarted < 3)
            throw new Error("bob's delivery has not been postponed by the circuit yet");
          return mine;
        },
        { timeout: 30_000, interval: 50 },
      );
      expect(postponed.attemptsMade).toBe(2);
      expect(failedCalls.filter((u) => u === "/fail/bob")).toHaveLength(2);

      // The same host for another key: its own circuit, closed.
      const other = await decodeRequest(stack.baseUrl, small(), {
        ...asyncAs("dave"),
        "X-Webhook-Url": `http://127.0.0.1:${port}/ok/dave`,
      });
      expect(other.status).toBe(202);
      const { id: daveJob } = (await other.json()) as JobObject;
      await vi.waitFor(
        () => {
          if (!delivered.some((d) => d.path === "/ok/dave" && d.job.id === daveJob))
            throw new Error("dave's webhook has not arrived");
        },
        { timeout: 30_000, interval: 25 },
      );
      expect(failedCalls.filter((u) => u === "/fail/bob")).toHaveLength(2);
    } finally {
      await queues.close();
    }
  });
});
