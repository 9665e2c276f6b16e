import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type DnsServer, startDnsServer } from "@hybrid/testing";
import { UnrecoverableError } from "bullmq";
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { WebhookResolver } from "./webhook-dns.ts";
import { REFUSED_ADDRESS } from "./webhook-guard.ts";
import { deliverWebhook, guardedFetch, WEBHOOK_USER_AGENT, type WebhookDelivery } from "./webhook-sender.ts";

interface Received {
  method: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

const newSecret = (): string => `whsec_${randomBytes(32).toString("base64")}`;

let server: Server;
let base: string;
let received: Received[];
// How the test server answers; a handler that never ends the response simulates a hung receiver.
let respond: (res: ServerResponse) => void;

beforeEach(async () => {
  received = [];
  respond = (res) => res.writeHead(204).end();
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({
        method: req.method,
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      respond(res);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  server.close();
  await once(server, "close");
});

const opts = { timeoutMs: 2000, allowedHosts: ["127.0.0.1"] };

function delivery(overrides: Partial<WebhookDelivery> = {}): WebhookDelivery {
  return {
    url: `${base}/hook?x=1`,
    msgId: "msg_2f1c9a7e",
    payload: JSON.stringify({ type: "job.completed", data: { id: "j1", output: [0.5, "é"] } }),
    secret: newSecret(),
    ...overrides,
  };
}

async function failure(d: WebhookDelivery, o: Parameters<typeof deliverWebhook>[1] = opts): Promise<Error> {
  const e = await deliverWebhook(d, o).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(Error);
  return e as Error;
}

describe("deliverWebhook", () => {
  it("POSTs a payload that the Standard Webhooks library verifies", async () => {
    const d = delivery();
    await expect(deliverWebhook(d, opts)).resolves.toEqual({ status: 204 });

    expect(received).toHaveLength(1);
    const [req] = received as [Received];
    expect(req.method).toBe("POST");
    expect(req.body).toBe(d.payload);
    expect(req.headers["content-type"]).toBe("application/json");
    expect(req.headers["user-agent"]).toBe(WEBHOOK_USER_AGENT);
    expect(req.headers["webhook-id"]).toBe(d.msgId);
    const ts = Number(req.headers["webhook-timestamp"]);
    expect(Number.isInteger(ts)).toBe(true);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(10);

    const headers = req.headers as Record<string, string>;
    expect(new Webhook(d.secret).verify(req.body, headers)).toEqual(JSON.parse(d.payload));
    expect(() => new Webhook(newSecret()).verify(req.body, headers)).toThrow(/signature/i);
    expect(() => new Webhook(d.secret).verify(`${req.body} `, headers)).toThrow(/signature/i);
  });

  it("resolves with any 2xx status", async () => {
    respond = (res) => res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    await expect(deliverWebhook(delivery(), opts)).resolves.toEqual({ status: 200 });
  });

  it.each([500, 503, 429, 408])("treats %i as retryable", async (status) => {
    respond = (res) => res.writeHead(status).end("try later");
    const e = await failure(delivery());
    expect(e).not.toBeInstanceOf(UnrecoverableError);
    expect(e.message).toContain(String(status));
  });

  it.each([404, 410, 400, 301, 302])("gives up on %i", async (status) => {
    const elsewhere = `${base}/elsewhere`;
    respond = (res) => res.writeHead(status, { location: elsewhere }).end();
    const e = await failure(delivery());
    expect(e).toBeInstanceOf(UnrecoverableError);
    expect(e.message).toContain(String(status));
    // A redirect is never followed.
    expect(received).toHaveLength(1);
  });

  it("times out a receiver that never answers, as a retryable error", async () => {
    respond = () => {};
    const started = performance.now();
    const e = await failure(delivery(), { ...opts, timeoutMs: 300 });
    const elapsed = performance.now() - started;
    expect(e).not.toBeInstanceOf(UnrecoverableError);
    // The message names the timer that fired (not the 2 s default); a late timer on a loaded
    // machine is no failure, an early one is.
    expect(e.message).toMatch(/timed out after 300 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(250);
  });

  it("retries when the connection is refused", async () => {
    server.close();
    await once(server, "close");
    const e = await failure(delivery());
    expect(e).not.toBeInstanceOf(UnrecoverableError);
    expect(e.message).toMatch(/ECONNREFUSED/);
    // Reopen so afterEach has a server to close.
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
  });

  it("refuses a host that is not allowed, without sending anything", async () => {
    const port = (server.address() as AddressInfo).port;
    const e = await failure(delivery({ url: `http://127.0.0.2:${port}/hook` }));
    expect(e).toBeInstanceOf(UnrecoverableError);
    expect(e.message).toMatch(/127\.0\.0\.2.*loopback/);
    expect(received).toHaveLength(0);
  });

  it("gives up on an unusable secret, without sending anything", async () => {
    const e = await failure(delivery({ secret: "whsec_" }));
    expect(e).toBeInstanceOf(UnrecoverableError);
    expect(received).toHaveLength(0);
  });

  it("uses the injected fetch", async () => {
    let seen: RequestInit | undefined;
    const fetchImpl: typeof fetch = async (_input, init) => {
      seen = init;
      return new Response(null, { status: 202 });
    };
    await expect(deliverWebhook(delivery(), { ...opts, fetchImpl })).resolves.toEqual({ status: 202 });
    expect(seen?.redirect).toBe("manual");
    expect(seen?.signal).toBeInstanceOf(AbortSignal);
    expect(received).toHaveLength(0);
  });
});

describe("DNS (c-ares, the test's own nameserver)", () => {
  // rebind.test answers public for the check, then loopback: what a rebinding attacker does.
  let rebindAsked = 0;
  let dnsServer: DnsServer;
  let silent: DnsServer;
  let resolver: WebhookResolver;
  beforeAll(async () => {
    dnsServer = await startDnsServer((name, type) => {
      if (type !== "A") return [];
      if (name === "hooks.internal") return ["127.0.0.1"];
      if (name === "rebind.test") return rebindAsked++ === 0 ? ["93.184.216.34"] : ["127.0.0.1"];
      return null;
    });
    silent = await startDnsServer("silent");
    resolver = new WebhookResolver({ servers: [dnsServer.address], timeoutMs: 2000, hostsFile: null });
  });
  afterAll(async () => {
    await dnsServer?.close();
    await silent?.close();
  });

  it("refuses at connect time a host that checked public but then resolves to an internal address", async () => {
    const port = (server.address() as AddressInfo).port;
    rebindAsked = 0;
    const url = `http://rebind.test:${port}/hook`;
    // The check sees a public address (the port is checked for allowed hosts only at submit) ...
    await expect(resolver.resolve("rebind.test")).resolves.toEqual(["93.184.216.34"]);
    // ... the connection's own lookup gets loopback, and no connection is made.
    const err = (await guardedFetch([], resolver)(url, { method: "POST" }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect((err.cause as { code?: string }).code).toBe(REFUSED_ADDRESS);
    expect((err.cause as Error).message).toMatch(/loopback/);
    expect(received).toEqual([]);
  });

  it("connects as usual to an allowed host whose name resolves to loopback", async () => {
    const port = (server.address() as AddressInfo).port;
    const res = await deliverWebhook(delivery({ url: `http://hooks.internal:${port}/hook` }), {
      timeoutMs: 2000,
      allowedHosts: ["hooks.internal"],
      resolver,
    });
    expect(res.status).toBe(204);
    expect(received).toHaveLength(1);
  });

  it("a nameserver that never answers fails the attempt as retryable, after the lookup's deadline", async () => {
    const hanging = new WebhookResolver({ servers: [silent.address], timeoutMs: 300, hostsFile: null });
    const err = await deliverWebhook(delivery({ url: "https://hooks.example/hook" }), {
      timeoutMs: 2000,
      allowedHosts: [],
      resolver: hanging,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/did not answer in time/);
    expect(silent.questions).toContain("A hooks.example");
    expect(received).toEqual([]);
  });
});
