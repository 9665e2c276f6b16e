import dns from "node:dns";
import { AppError } from "@hybrid/protocol";
import { afterEach, describe, expect, it, vi } from "vitest";
import { blockedAddressReason, checkWebhookUrl, parseAllowedHosts } from "./webhook-guard.ts";

// These tests only parse and resolve: nothing here ever opens a connection.

async function refusal(raw: string, allowed: readonly string[] = []): Promise<AppError> {
  const e = await checkWebhookUrl(raw, allowed).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `${raw} should be refused`).toBeInstanceOf(AppError);
  expect((e as AppError).code).toBe("invalid_webhook");
  expect((e as AppError).status).toBe(400);
  return e as AppError;
}

afterEach(() => {
  vi.restoreAllMocks();
});

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

  it("names the host and the reason", async () => {
    const e = await refusal("http://10.1.2.3:8080/x");
    expect(e.message).toContain("10.1.2.3");
    expect(e.message).toContain("private");
    const local = await refusal("http://localhost/");
    expect(local.message).toMatch(/localhost \(resolves to 127\.0\.0\.1\) is a loopback address/);
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
    expect(e.message).toContain("nonexistent.invalid could not be resolved");
  });

  it.each(["http://93.184.216.34/hook", "https://8.8.8.8/", "http://[2606:4700:4700::1111]/"])(
    "accepts public address %s (check only, nothing is sent)",
    async (raw) => {
      const url = await checkWebhookUrl(raw, []);
      expect(url.href).toBe(new URL(raw).href);
    },
  );

  it("accepts an allowed host without resolving it", async () => {
    const lookup = vi.spyOn(dns.promises, "lookup");
    await expect(checkWebhookUrl("http://127.0.0.1:3000/hook", ["127.0.0.1"])).resolves.toBeInstanceOf(URL);
    await expect(checkWebhookUrl("http://Hooks.Internal/", ["hooks.internal"])).resolves.toBeInstanceOf(URL);
    await expect(checkWebhookUrl("http://[::1]/", ["::1"])).resolves.toBeInstanceOf(URL);
    expect(lookup).not.toHaveBeenCalled();
    // The allow list is exact: other loopback addresses stay refused.
    await refusal("http://127.0.0.2/", ["127.0.0.1"]);
  });

  it("refuses a name when any one of its addresses is internal", async () => {
    vi.spyOn(dns.promises, "lookup").mockResolvedValue([
      { address: "93.184.216.34", family: 4 },
      { address: "10.0.0.5", family: 4 },
    ] as never);
    const e = await refusal("https://rebind.example/");
    expect(e.message).toContain("10.0.0.5");
  });

  it("accepts a name whose addresses are all public", async () => {
    vi.spyOn(dns.promises, "lookup").mockResolvedValue([
      { address: "93.184.216.34", family: 4 },
      { address: "2606:2800:220:1:248:1893:25c8:1946", family: 6 },
    ] as never);
    await expect(checkWebhookUrl("https://example.com/", [])).resolves.toBeInstanceOf(URL);
  });

  it("refuses a name that resolves to no address", async () => {
    vi.spyOn(dns.promises, "lookup").mockResolvedValue([] as never);
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
    ["64:ff9b:1::a9fe:a9fe", "link-local"],
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

  it("gives an empty list for no setting", () => {
    expect(parseAllowedHosts(undefined)).toEqual([]);
    expect(parseAllowedHosts("")).toEqual([]);
    expect(parseAllowedHosts(" , ")).toEqual([]);
  });
});
