// Browser tests drive a real Chromium with playwright-core: the machine's own Chromium (Debian's
// package; `.ci/run` installs it), never a browser playwright would download.
import { accessSync, constants } from "node:fs";
import { mkdir } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { repoRoot } from "../../scripts/lib.ts";

/** Where each test's screenshot goes (ignored by git). */
export const OUTPUT_DIR = join(repoRoot, "test", "browser", "output");

const NAMES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `CHROMIUM_PATH`, else the first Chromium on the PATH; null when there is none. */
export function findChromium(): string | null {
  const given = process.env.CHROMIUM_PATH;
  if (given) return executable(given) ? given : null;
  for (const dir of (process.env.PATH ?? "").split(delimiter).filter(Boolean))
    for (const name of NAMES) if (executable(join(dir, name))) return join(dir, name);
  return null;
}

/** Why the browser tests cannot run here, or null when they can. Printed, never skipped silently. */
export function skipReason(path: string | null): string | null {
  if (path) return null;
  return process.env.CHROMIUM_PATH
    ? `CHROMIUM_PATH=${process.env.CHROMIUM_PATH} is not an executable`
    : "no Chromium on the PATH (install it: apt-get install -y chromium, or set CHROMIUM_PATH)";
}

export async function launch(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    // Chromium refuses to sandbox as root (CI runs as root).
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
}

/** A desktop-sized page (or a phone's, with `phone`), collecting the page's own errors. */
export async function openPage(
  browser: Browser,
  opts: { phone?: boolean } = {},
): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await browser.newContext(
    opts.phone
      ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true }
      : { viewport: { width: 1100, height: 760 }, deviceScaleFactor: 1 },
  );
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  // Failed requests (the 4xx the tests provoke) are logged as errors too: only CSP refusals count.
  page.on("console", (m) => {
    if (m.type() === "error" && /Content.Security.Policy|Refused to/i.test(m.text()))
      errors.push(`console: ${m.text()}`);
  });
  return { context, page, errors };
}

/** Saves a screenshot of the page as `<name>.png` in {@link OUTPUT_DIR}; returns its path. */
export async function screenshot(page: Page, name: string, fullPage = false): Promise<string> {
  await mkdir(OUTPUT_DIR, { recursive: true });
  const path = join(OUTPUT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage });
  return path;
}
