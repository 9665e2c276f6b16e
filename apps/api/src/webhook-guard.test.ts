import { AppError } from "@hybrid/protocol";
import { type DnsServer, startDnsServer } from "@hybrid/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebhookResolver } from "./webhook-dns.ts";
import { blockedAddressReason, checkWebhookUrl, parseAllowedHosts } from "./webhook-guard.ts";

// These tests only parse and resolve: nothing here ever opens a connection. Names resolve
// against a DNS server of the test's own (real UDP, real c-ares), from this table.
const zone: Record<string, string[]> = {
  "rebind.example": ["93.184.216.34", "10.0.0.5"],
  "example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
  "empty.example": [],
  "docs.example": ["192.0.2.10"],
  "mapped.example": ["::ffff:a00:1"],
};
let dnsServer: DnsServer;
let resolver: WebhookResolver;

beforeAll(async () => {
  dnsServer = await startDnsServer((name) => zone[name] ?? null);
  resolver = new WebhookResolver({ servers: [dnsServer.address], timeoutMs: 2000, hostsFile: null });
});
afterAll(async () => {
  await dnsServer?.close();
});

const check = (raw: string, allowed: readonly string[] = []) => checkWebhookUrl(raw, allowed, { resolver });

async function refusal(raw: string, allowed: readonly string[] = []): Promise<AppError> {
  const e = await check(raw, allowed).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `${raw} should be refused`).toBeInstanceOf(AppError);
  expect((e as AppError).code).toBe("invalid_webhook");
  expect((e as AppError).status).toBe(400);
  return e as AppError;
}

describe("checkWebhookUrl", () => {
  it.each([
    "http://localhost/hook",
    "http://127.0.0.2/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://0.0.0.0/",
    "http://10.1.2.3/",
    "https://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
    "http://[::]/",
    // The WHATWG parser turns these into 127.0.0.1 before we see them.
    "http://2130706433/",
    "http://0x7f.1/",
  ])("refuses internal address %s", async (raw) => {
    const e = await refusal(raw);
    expect(e.message).toMatch(/public address/);
  });

  it.each([
    "http://192.0.2.1/",
    "http://198.51.100.7/",
    "https://203.0.113.200/",
    "http://[2001:db8::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://[64:ff9b:1::808:808]/",
  ])("refuses documentation, Teredo and local-use NAT64 address %s", async (raw) => {
    const e = await refusal(raw);
    expect(e.message).toMatch(/documentation|Teredo|NAT64/);
  });

  it("names the host and the reason, never the address a name resolves to", async () => {
    const e = await refusal("http://10.1.2.3:8080/x");
    expect(e.message).toContain("10.1.2.3");
    expect(e.message).toContain("private");
    const local = await refusal("http://localhost/");
    expect(local.message).toMatch(/localhost resolves to a loopback address/);
    expect(local.message).not.toContain("127.0.0.1");
    const docs = await refusal("http://docs.example/");
    expect(docs.message).toMatch(/docs\.example resolves to a documentation address/);
    expect(docs.message).not.toContain("192.0.2.10");
    const mapped = await refusal("http://mapped.example/");
    expect(mapped.message).toMatch(/mapped\.example resolves to a private address;/);
    expect(mapped.message).not.toContain("10.0.0.1");
  });

  it("allows only ports 80 and 443 outside the allow list", async () => {
    for (const raw of [
      "http://93.184.216.34:8080/",
      "https://example.com:8443/",
      "http://example.com:443/x",
    ]) {
      if (raw.endsWith(":443/x")) {
        await expect(check(raw)).resolves.toBeInstanceOf(URL);
        continue;
      }
      const e = await refusal(raw);
      expect(e.message).toMatch(/port 80 or 443/);
    }
    await expect(check("http://93.184.216.34/")).resolves.toBeInstanceOf(URL);
    await expect(check("https://example.com/")).resolves.toBeInstanceOf(URL);
    await expect(check("https://example.com:443/")).resolves.toBeInstanceOf(URL);
  });

  it("allows host:port entries on that port only, and host entries on any port", async () => {
    await expect(check("http://127.0.0.1:3000/hook", ["127.0.0.1:3000"])).resolves.toBeInstanceOf(URL);
    await expect(check("http://[::1]:3000/hook", ["[::1]:3000"])).resolves.toBeInstanceOf(URL);
    await expect(check("http://hooks.internal:8443/", ["hooks.internal:8443"])).resolves.toBeInstanceOf(URL);
    await expect(check("http://127.0.0.1:3001/hook", ["127.0.0.1"])).resolves.toBeInstanceOf(URL);
    // Another port of a host:port entry is not allowed: the address check applies again.
    expect((await refusal("http://127.0.0.1:3001/hook", ["127.0.0.1:3000"])).message).toMatch(/loopback/);
    expect((await refusal("http://[::1]:3001/", ["[::1]:3000"])).message).toMatch(/loopback/);
    expect((await refusal("https://example.com:8444/", ["example.com:8443"])).message).toMatch(
      /port 80 or 443/,
    );
  });

  it.each([
    "ftp://x/",
    "file:///etc/passwd",
    "http://u:p@127.0.0.1/",
    "http://u@93.184.216.34/",
    "not a url",
    "/relative/path",
    "",
    "http://",
    `https://example.com/${"a".repeat(2048)}`,
  ])("refuses malformed or unsupported URL %j", async (raw) => {
    await refusal(raw);
  });

  it("refuses a name that does not resolve", async () => {
    const e = await refusal("https://nonexistent.invalid/hook");
    expect(dnsServer.questions).toContain("A nonexistent.invalid");
    expect(e.message).toContain("nonexistent.invalid could not be resolved");
  });

  it.each(["http://93.184.216.34/hook", "https://8.8.8.8/", "http://[2606:4700:4700::1111]/"])(
    "accepts public address %s (check only, nothing is sent)",
    async (raw) => {
      const url = await check(raw);
      expect(url.href).toBe(new URL(raw).href);
    },
  );

  it("accepts an allowed host without resolving it", async () => {
    const asked = dnsServer.questions.length;
    await expect(check("http://127.0.0.1:3000/hook", ["127.0.0.1"])).resolves.toBeInstanceOf(URL);
    await expect(check("http://Hooks.Internal/", ["hooks.internal"])).resolves.toBeInstanceOf(URL);
    await expect(check("http://[::1]/", ["::1"])).resolves.toBeInstanceOf(URL);
    expect(dnsServer.questions.length).toBe(asked);
    // The allow list is exact: other loopback addresses stay refused.
    await refusal("http://127.0.0.2/", ["127.0.0.1"]);
  });

  it("refuses a name when any one of its addresses is internal", async () => {
    const e = await refusal("https://rebind.example/");
    expect(e.message).toMatch(/rebind\.example resolves to a private address/);
  });

  it("accepts a name whose addresses are all public (A and AAAA asked)", async () => {
    await expect(check("https://example.com/")).resolves.toBeInstanceOf(URL);
    expect(dnsServer.questions).toEqual(expect.arrayContaining(["A example.com", "AAAA example.com"]));
  });

  it("refuses a name that resolves to no address", async () => {
    const e = await refusal("https://empty.example/");
    expect(e.message).toContain("could not be resolved");
  });
});

describe("blockedAddressReason", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["::1", "loopback"],
    ["0.1.2.3", "unspecified"],
    ["::", "unspecified"],
    ["10.255.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.0.1", "private"],
    ["fc00::1", "private"],
    ["fd00:ec2::254", "private"],
    ["169.254.169.254", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["100.127.255.255", "carrier-grade NAT"],
    ["239.255.255.250", "multicast"],
    ["ff02::1", "multicast"],
    ["240.0.0.1", "reserved"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["0:0:0:0:0:ffff:a9fe:a9fe", "link-local"],
    ["::127.0.0.1", "loopback"],
    ["::ffff:0:a00:1", "private"],
    ["64:ff9b::a00:1", "private"],
    ["64:ff9b:1::a9fe:a9fe", "NAT64"],
    ["64:ff9b:1::808:808", "NAT64"],
    ["192.0.2.1", "documentation"],
    ["198.51.100.255", "documentation"],
    ["203.0.113.0", "documentation"],
    ["2001:db8:85a3::8a2e:370:7334", "documentation"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"],
    ["2001::1", "Teredo"],
    ["2002:c0a8:101::1", "private"],
  ])("%s is %s", (address, reason) => {
    expect(blockedAddressReason(address)).toContain(reason);
  });

  it.each([
    "8.8.8.8",
    "93.184.216.34",
    "172.32.0.1",
    "100.128.0.1",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "192.0.3.1",
    "198.51.101.1",
    "203.0.114.1",
    "2001:db9::1",
    "2001:1::1",
    "64:ff9b:2::808:808",
  ])("%s is public", (address) => {
    expect(blockedAddressReason(address)).toBeUndefined();
  });

  it("refuses what is not an IP address", () => {
    expect(blockedAddressReason("example.com")).toBe("not an IP address");
  });
});

describe("parseAllowedHosts", () => {
  it("splits, trims, lower-cases and drops empty entries", () => {
    expect(parseAllowedHosts(" 127.0.0.1, Hooks.Internal ,,::1 ,")).toEqual([
      "127.0.0.1",
      "hooks.internal",
      "::1",
    ]);
  });

  it("keeps host:port entries as written (lower-cased)", () => {
    expect(parseAllowedHosts("127.0.0.1:3000,[::1]:8080,Hooks.Internal:8443")).toEqual([
      "127.0.0.1:3000",
      "[::1]:8080",
      "hooks.internal:8443",
    ]);
  });

  it("gives an empty list for no setting", () => {
    expect(parseAllowedHosts(undefined)).toEqual([]);
    expect(parseAllowedHosts("")).toEqual([]);
    expect(parseAllowedHosts(" , ")).toEqual([]);
  });
});
