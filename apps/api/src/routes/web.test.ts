import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PlaygroundConfig } from "@hybrid/protocol";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorHandler, notFound } from "../errors.ts";
import { defaultWebDir, webRoutes } from "./web.ts";

let dir: string;
let base: string;
let unbuilt: string;
let server: { close(): void } | undefined;
let notBuilt: { close(): void } | undefined;
const config: PlaygroundConfig = { api_keys: true, dashboard: false, docs: true };

/** The playground alone, with the API's 404 and error handler after it. */
function serve(webDir: string): Promise<{ url: string; close(): void }> {
  const app = express()
    .use(webRoutes({ dir: webDir, config: async () => config }))
    .use(notFound)
    .use(errorHandler);
  return new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () =>
      resolve({ url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, close: () => s.close() }),
    );
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "web-routes-"));
  const dist = join(dir, "dist");
  await mkdir(join(dist, "assets"), { recursive: true });
  await writeFile(join(dist, "index.html"), "<!doctype html><title>playground</title>");
  await writeFile(join(dist, "assets", "index-abc123.js"), "console.log(1)");
  await writeFile(join(dist, "favicon.svg"), "<svg></svg>");
  const a = await serve(dist);
  const b = await serve(join(dir, "missing"));
  server = a;
  notBuilt = b;
  base = a.url;
  unbuilt = b.url;
});
afterAll(async () => {
  server?.close();
  notBuilt?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the playground's routes", () => {
  it("serves the page at / with a strict CSP, revalidated on every load", async () => {
    const res = await fetch(`${base}/`, { headers: { Accept: "text/html" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("cache-control")).toBe("no-cache");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    // Never framed by another page (clickjacking a page that holds a key).
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/https?:/);
    expect(await res.text()).toContain("<title>playground</title>");
  });

  it("serves hashed assets for good and icons for a day", async () => {
    const js = await fetch(`${base}/assets/index-abc123.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toMatch(/immutable/);
    const icon = await fetch(`${base}/favicon.svg`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get("content-type")).toMatch(/^image\/svg\+xml/);
  });

  it("tells the page whether keys are on", async () => {
    const res = await fetch(`${base}/playground/config.json`);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await res.json()).toEqual(config);
  });

  it("leaves every other path to the API: JSON 404s, no page fallback", async () => {
    for (const path of [
      "/assets/nope.js",
      "/index.html",
      "/v1/nope",
      "/jobs",
      "/assets/../index.html",
      "/x.txt",
    ]) {
      const res = await fetch(`${base}${path}`, { headers: { Accept: "text/html" } });
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe("not_found");
    }
  });

  it("says how to build it when it is not built: a page for browsers, JSON for the rest", async () => {
    const page = await fetch(`${unbuilt}/`, { headers: { Accept: "text/html,*/*;q=0.8" } });
    expect(page.status).toBe(503);
    expect(await page.text()).toContain("pnpm --filter @hybrid/web build");
    const json = await fetch(`${unbuilt}/`);
    expect(json.status).toBe(503);
    expect(((await json.json()) as { code: string }).code).toBe("unavailable");
  });

  it("finds @hybrid/web's build folder", () => {
    expect(defaultWebDir()).toMatch(/web[/\\]dist$/);
  });
});
