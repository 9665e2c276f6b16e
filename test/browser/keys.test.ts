// The playground with API keys on: it asks for a key before anything else, shows the API's 401
// for a wrong one, and with a good one works and keeps it for the tab's session.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../scripts/lib.ts";
import { ensureWebBuild } from "../../scripts/web-build.ts";
import { type Stack, startStack } from "../e2e/stack.ts";
import { findChromium, launch, openPage, screenshot, skipReason } from "./browser.ts";

const chromiumPath = findChromium();
const skip = skipReason(chromiumPath);
if (skip) process.stderr.write(`\nBrowser tests SKIPPED: ${skip}.\n\n`);

let tmp: string;
let stack: Stack;
let browser: Browser;
let key = "";

describe.skipIf(skip !== null)(`the playground with API keys${skip ? ` (skipped: ${skip})` : ""}`, () => {
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "browser-keys-"));
    const keysFile = join(tmp, "keys.json");
    // The real `pnpm keys create`, from source; the key is its last line.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--conditions=source", "--import", "tsx", "apps/api/src/keys-cli.ts", "create", "browser"],
      { cwd: repoRoot, env: { ...process.env, API_KEYS_FILE: keysFile } },
    );
    key = stdout.trimEnd().split("\n").at(-1)!;
    await ensureWebBuild("ignore");
    stack = await startStack({}, { api: { API_KEYS_FILE: keysFile } });
    browser = await launch(chromiumPath!);
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("asks for a key, shows the API's 401 for a wrong one, and works with a good one", async () => {
    const { context, page, errors } = await openPage(browser);
    try {
      await page.goto(stack.baseUrl);
      const input = page.getByLabel("API key", { exact: true });
      await input.waitFor();
      expect(await page.getByRole("heading", { name: "API key needed" }).count()).toBe(1);
      // Nothing else is shown before a key: no tab, no model list.
      expect(await page.locator("#tab-text-to-image").count()).toBe(0);
      await screenshot(page, "key-prompt");

      await input.fill(`hik_${"x".repeat(43)}`);
      await input.press("Enter");
      const alert = page.getByRole("alert");
      await alert.waitFor();
      const text = (await alert.textContent()) ?? "";
      expect(text).toContain("The API key is not valid.");
      expect(text).toContain("HTTP 401");
      expect(text).toContain("unauthorized");
      expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
      await screenshot(page, "key-wrong");

      await page.getByLabel("API key", { exact: true }).fill(key);
      await page.getByRole("button", { name: "Use this key" }).click();
      await page.locator("#text-to-image-model").waitFor();
      expect(await page.locator("#text-to-image-model option").allTextContents()).toContain(
        "sd-tiny (sd-v1)",
      );
      // The dashboard is off with keys on and no ADMIN_KEY: no link to it.
      expect(await page.getByRole("link", { name: "Queues" }).count()).toBe(0);
      expect(await page.getByRole("link", { name: "API docs" }).getAttribute("href")).toBe("/docs");

      // Kept for the tab's session: a reload goes straight to the tabs, and the key's jobs list.
      await page.goto(`${stack.baseUrl}/#/jobs`);
      await page.getByRole("heading", { name: "Your recent jobs" }).waitFor();
      expect(await page.getByLabel("API key", { exact: true }).count()).toBe(0);
      await screenshot(page, "key-accepted");
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
