import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError } from "@hybrid/protocol";
import { type DnsServer, startDnsServer } from "@hybrid/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LookupError, parseDnsServers, parseHostsFile, WebhookResolver } from "./webhook-dns.ts";

// Real c-ares lookups against nameservers of the test's own on 127.0.0.1: one that answers from a
// table, one that never answers.
let answering: DnsServer;
let silent: DnsServer;
let tmp: string;

beforeAll(async () => {
  answering = await startDnsServer((name) =>
    name === "both.example"
      ? ["93.184.216.34", "2606:4700:4700::1111"]
      : name === "v4.example"
        ? ["8.8.8.8"]
        : null,
  );
  silent = await startDnsServer("silent");
  tmp = await mkdtemp(join(tmpdir(), "webhook-dns-"));
});
afterAll(async () => {
  await answering?.close();
  await silent?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const failure = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => {
      throw new Error("expected the lookup to fail");
    },
    (e: unknown) => e,
  );

describe("WebhookResolver", () => {
  it("asks for A and AAAA and returns both", async () => {
    const r = new WebhookResolver({ servers: [answering.address], hostsFile: null });
    expect((await r.resolve("both.example")).sort()).toEqual(["2606:4700:4700::1111", "93.184.216.34"]);
    expect(await r.resolve("V4.Example.")).toEqual(["8.8.8.8"]);
  });

  it("says ENOTFOUND for a name without address", async () => {
    const r = new WebhookResolver({ servers: [answering.address], hostsFile: null });
    const e = await failure(r.resolve("nope.example"));
    expect(e).toBeInstanceOf(LookupError);
    expect((e as LookupError).code).toBe("ENOTFOUND");
  });

  it("gives up on a nameserver that never answers at its deadline, as ETIMEOUT", async () => {
    const r = new WebhookResolver({ servers: [silent.address], timeoutMs: 200, hostsFile: null });
    const e = await failure(r.resolve("hang.example", "key-a"));
    expect(e).toBeInstanceOf(LookupError);
    expect((e as LookupError).code).toBe("ETIMEOUT");
    expect(silent.questions).toEqual(expect.arrayContaining(["A hang.example", "AAAA hang.example"]));
    // Its place under the caps is given back.
    expect(r.pending).toBe(0);
  });

  it("caps lookups in flight per key (429 rate_limited) and overall (429 overloaded)", async () => {
    const r = new WebhookResolver({
      servers: [silent.address],
      timeoutMs: 1000,
      maxLookups: 3,
      maxLookupsPerKey: 2,
      hostsFile: null,
    });
    const held = [r.resolve("a.example", "key-a"), r.resolve("b.example", "key-a")].map((p) => failure(p));
    expect(r.pending).toBe(2);
    const perKey = await failure(r.resolve("c.example", "key-a"));
    expect(perKey).toBeInstanceOf(AppError);
    expect((perKey as AppError).code).toBe("rate_limited");
    expect((perKey as AppError).status).toBe(429);
    expect((perKey as AppError).retryAfterSeconds).toBe(1);

    held.push(failure(r.resolve("d.example", "key-b")));
    const overall = await failure(r.resolve("e.example", "key-c"));
    expect((overall as AppError).code).toBe("overloaded");
    expect((overall as AppError).status).toBe(429);
    // Deliveries' lookups (no owner) are not counted against submissions' caps.
    await expect(failure(r.resolve("f.example"))).resolves.toBeInstanceOf(LookupError);

    for (const e of await Promise.all(held)) expect((e as LookupError).code).toBe("ETIMEOUT");
    expect(r.pending).toBe(0);
  });

  it("answers localhost names with loopback and reads the hosts file first, without DNS", async () => {
    const hosts = join(tmp, "hosts");
    await writeFile(hosts, "# comment\n10.1.2.3  hooks.internal  hooks # trailing\n::1 ip6-localhost\n");
    const r = new WebhookResolver({ servers: [silent.address], timeoutMs: 100, hostsFile: hosts });
    const asked = silent.questions.length;
    expect(await r.resolve("localhost")).toEqual(["127.0.0.1", "::1"]);
    expect(await r.resolve("app.localhost")).toEqual(["127.0.0.1", "::1"]);
    expect(await r.resolve("hooks.internal")).toEqual(["10.1.2.3"]);
    expect(await r.resolve("ip6-localhost")).toEqual(["::1"]);
    expect(await r.resolve("8.8.4.4")).toEqual(["8.8.4.4"]);
    expect(silent.questions.length).toBe(asked);
  });

  it("refuses a nameserver setting that is not an address at construction", () => {
    expect(() => new WebhookResolver({ servers: ["not an address"] })).toThrow();
  });
});

describe("parsing", () => {
  it("parseHostsFile maps every name of a line to its address", () => {
    const table = parseHostsFile(
      "127.0.0.1 localhost\n10.0.0.1 A.internal b\nbogus line\n10.0.0.2 a.internal\n",
    );
    expect(table.get("a.internal")).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(table.get("b")).toEqual(["10.0.0.1"]);
    expect(table.has("bogus")).toBe(false);
  });

  it("parseDnsServers splits and trims; empty is the system's", () => {
    expect(parseDnsServers(" 10.0.0.2, 127.0.0.1:5353 ,")).toEqual(["10.0.0.2", "127.0.0.1:5353"]);
    expect(parseDnsServers("")).toEqual([]);
    expect(parseDnsServers(undefined)).toEqual([]);
  });
});
