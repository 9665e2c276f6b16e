// The queue dashboard (Bull Board at /admin/queues) on a real stack: what it lists as workers
// come and go, that it serves its UI itself, and who may open it with and without API keys.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, stop } from "../../scripts/lib.ts";
import { type Stack, startStack } from "./stack.ts";

const run = promisify(execFile);

interface BoardQueue {
  name: string;
  readOnlyMode: boolean;
  description?: string;
}

const queuesOf = async (res: Response): Promise<BoardQueue[]> =>
  ((await res.json()) as { queues: BoardQueue[] }).queues;

/** The local paths of a page's `src`/`href` attributes; fails on any absolute (external) URL. */
function assetsOf(html: string): string[] {
  const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  for (const ref of refs) expect(ref, `${ref} is not served by the API`).not.toMatch(/^(?:[a-z]+:)?\/\//i);
  return refs;
}

describe("dashboard without API keys", () => {
  let stack: Stack;
  beforeAll(async () => {
    // The first worker serves two models; another one, started later, brings a third.
    stack = await startStack({}, { worker: { MODELS: "sd-v1-tiny,sd-tiny" } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("serves Bull Board's page and its assets itself, open like the rest", async () => {
    const res = await fetch(`${stack.baseUrl}/admin/queues`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("x-powered-by")).toBeNull();
    const html = await res.text();
    expect(html).toContain('<base href="/admin/queues/"');
    const assets = assetsOf(html).filter((a) => a.startsWith("static/"));
    expect(assets.length).toBeGreaterThan(2);
    for (const asset of assets) {
      const r = await fetch(`${stack.baseUrl}/admin/queues/${asset}`);
      expect(r.status, asset).toBe(200);
      await r.arrayBuffer();
    }
  });

  it("lists every job queue of the live models and the webhook queue, read-only", async () => {
    const res = await fetch(`${stack.baseUrl}/admin/queues/api/queues`);
    expect(res.status).toBe(200);
    const queues = await queuesOf(res);
    const names = queues.map((q) => q.name);
    expect(names).toEqual(
      expect.arrayContaining(["decode-sd-v1-tiny", "encode-sd-v1-tiny", "generate-sd-tiny", "webhooks"]),
    );
    expect(names).toContain("decode-sd-tiny");
    expect(names).not.toContain("decode-sdxl-tiny");
    expect(queues.every((q) => q.readOnlyMode)).toBe(true);
    expect(queues.find((q) => q.name === "generate-sd-tiny")?.description).toBe("generate jobs of sd-tiny");
  });

  it("follows models as their workers come and go", async () => {
    const names = async () =>
      (await queuesOf(await fetch(`${stack.baseUrl}/admin/queues/api/queues`))).map((q) => q.name);
    const poll = { timeout: 30_000, interval: 250 };
    const extra = await stack.addWorker({ MODELS: "sdxl-tiny" });
    await expect.poll(names, poll).toContain("decode-sdxl-tiny");
    await stop(extra);
    await expect.poll(names, poll).not.toContain("decode-sdxl-tiny");
    const after = await names();
    expect(after).toContain("decode-sd-v1-tiny");
    expect(after).toContain("webhooks");
  });
});

describe("dashboard with API keys and ADMIN_KEY", () => {
  const adminKey = "admin-0123456789abcdef0123456789abcdef";
  let tmp: string;
  let apiKey: string;
  let stack: Stack;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "e2e-dashboard-"));
    const keysFile = join(tmp, "keys.json");
    const { stdout } = await run(
      process.execPath,
      ["--conditions=source", "--import", "tsx", "apps/api/src/keys-cli.ts", "create", "alice"],
      { cwd: repoRoot, env: { ...process.env, API_KEYS_FILE: keysFile } },
    );
    apiKey = stdout.trimEnd().split("\n").at(-1)!;
    expect(apiKey).toMatch(/^hik_/);
    stack = await startStack({}, { api: { API_KEYS_FILE: keysFile, ADMIN_KEY: adminKey } });
  });
  afterAll(async () => {
    await stack?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const get = (path: string, authorization?: string) =>
    fetch(`${stack.baseUrl}${path}`, authorization ? { headers: { Authorization: authorization } } : {});
  const basic = (user: string, password: string) =>
    `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

  it("asks a browser for the admin key (401, Basic challenge)", async () => {
    for (const path of [
      "/admin/queues",
      "/admin/queues/api/queues",
      "/admin/queues/static/images/logo.svg",
    ]) {
      const res = await get(path);
      expect(res.status, path).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Basic realm=/);
      expect(((await res.json()) as { code: string }).code).toBe("unauthorized");
    }
  });

  it("opens to the admin key, by HTTP Basic (any user) or as a bearer token", async () => {
    const page = await get("/admin/queues", basic("ops", adminKey));
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<base href=");
    const api = await get("/admin/queues/api/queues", `Bearer ${adminKey}`);
    expect(api.status).toBe(200);
    expect((await queuesOf(api)).map((q) => q.name)).toContain("decode-sd-v1-tiny");
    expect((await get("/admin/queues/api/queues", basic("", adminKey))).status).toBe(200);
  });

  it("refuses an API key, a wrong admin key and malformed credentials", async () => {
    for (const authorization of [
      `Bearer ${apiKey}`,
      basic("alice", apiKey),
      `Bearer ${adminKey}x`,
      basic(adminKey, "nope"),
      `Basic ${Buffer.from(adminKey).toString("base64")}`,
      `Token ${adminKey}`,
    ]) {
      const res = await get("/admin/queues/api/queues", authorization);
      expect([401, 403], authorization.slice(0, 12)).toContain(res.status);
    }
  });

  it("is not an API key itself", async () => {
    expect((await get("/v1/models", `Bearer ${adminKey}`)).status).toBe(401);
    expect((await get("/v1/models", `Bearer ${apiKey}`)).status).toBe(200);
  });
});
