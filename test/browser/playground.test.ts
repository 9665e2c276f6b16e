// The playground in a real Chromium against the real stack (API + worker + Redis): text-to-image
// with progress and the image, cancel, image-to-image from an uploaded file, the VAE round trip,
// the jobs tab, an API error shown as the API's message, and a phone-width layout.
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import sharp from "sharp";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { repoRoot } from "../../scripts/lib.ts";
import { ensureWebBuild } from "../../scripts/web-build.ts";
import { type Stack, startStack } from "../e2e/stack.ts";
import { findChromium, launch, openPage, screenshot, skipReason } from "./browser.ts";

const chromiumPath = findChromium();
const skip = skipReason(chromiumPath);
if (skip) process.stderr.write(`\nBrowser tests SKIPPED: ${skip}.\n\n`);

let stack: Stack;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let errors: string[];

/** A PNG of `width` × `height` with a gradient, to upload. */
async function pngOf(width: number, height: number): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      pixels.set([(x * 255) / width, (y * 255) / height, 128], (y * width + x) * 3);
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/** Fills the generation form of a tab (`text-to-image` or `image-to-image`). */
async function fillForm(
  tab: string,
  fields: { model: string; prompt: string; width: string; height: string; steps: string; seed?: string },
) {
  await page.locator(`#${tab}-model`).selectOption(fields.model);
  await page.locator(`#${tab}-prompt`).fill(fields.prompt);
  await page.locator(`#${tab}-width`).fill(fields.width);
  await page.locator(`#${tab}-height`).fill(fields.height);
  await page.locator(`#${tab}-steps`).fill(fields.steps);
  if (fields.seed) await page.locator(`#${tab}-seed`).fill(fields.seed);
}

const tab = (id: string) => page.locator(`#tab-${id}`);

/** The natural size of an `<img>` once it has loaded. */
async function naturalSize(selector: string): Promise<[number, number]> {
  const img = page.locator(selector);
  await img.waitFor({ timeout: 60_000 });
  await page.waitForFunction(
    (s) => (document.querySelector(s) as HTMLImageElement | null)?.complete,
    selector,
  );
  return img.evaluate((el: HTMLImageElement) => [el.naturalWidth, el.naturalHeight] as [number, number]);
}

describe.skipIf(skip !== null)(`the playground in Chromium${skip ? ` (skipped: ${skip})` : ""}`, () => {
  beforeAll(async () => {
    await ensureWebBuild("ignore");
    stack = await startStack();
    browser = await launch(chromiumPath!);
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });
  beforeEach(async () => {
    ({ context, page, errors } = await openPage(browser));
  });
  afterEach(async (ctx) => {
    if (ctx.task.result?.state === "fail")
      await screenshot(page, `failed-${ctx.task.name.replace(/\W+/g, "-")}`);
    await context.close();
  });

  it("generates an image from a prompt: progress to 100 %, previews, then the image of the asked size", async () => {
    await page.goto(stack.baseUrl);
    await fillForm("text-to-image", {
      model: "sd-tiny",
      prompt: "a lighthouse at dusk",
      width: "192",
      height: "128",
      steps: "12",
      seed: "42",
    });
    // Everything the progress bar and the preview show, as it happens.
    await page.evaluate(() => {
      const w = window as unknown as { seen: { percent: string[]; previews: number } };
      w.seen = { percent: [], previews: 0 };
      new MutationObserver(() => {
        const p = document.querySelector("#tab-text-to-image [data-testid=percent]")?.textContent;
        if (p && w.seen.percent.at(-1) !== p) w.seen.percent.push(p);
        if (document.querySelector("#tab-text-to-image img.preview")) w.seen.previews++;
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await tab("text-to-image").getByRole("button", { name: "Generate" }).click();

    expect(await naturalSize("#tab-text-to-image [data-testid=result-image]")).toEqual([192, 128]);
    expect(await tab("text-to-image").getByTestId("percent").textContent()).toBe("100 %");
    expect(await tab("text-to-image").getByRole("status").textContent()).toBe("Done.");
    expect(await tab("text-to-image").getByTestId("seed").textContent()).toBe("42");
    const seen = await page.evaluate(
      () => (window as unknown as { seen: { percent: string[]; previews: number } }).seen,
    );
    const percents = seen.percent.map((p) => Number.parseInt(p, 10));
    expect(percents.at(-1)).toBe(100);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    // Steps were shown as they ran, with the latent previews the stream carried.
    expect(percents.some((p) => p > 0 && p < 100)).toBe(true);
    expect(seen.previews).toBeGreaterThan(0);
    const download = tab("text-to-image").getByRole("link", { name: "Download" });
    expect(await download.getAttribute("download")).toBe("sd-tiny-42.png");
    const shot = await screenshot(page, "text-to-image");
    // The README's picture of the playground: `UPDATE_SCREENSHOTS=1 pnpm test:browser` renews it.
    if (process.env.UPDATE_SCREENSHOTS) await copyFile(shot, join(repoRoot, "docs", "playground.png"));

    // Its job, opened from the result: the events the run went through, and the same image.
    await tab("text-to-image").getByRole("link", { name: "Job details" }).click();
    const events = tab("jobs").locator("ol.events li");
    await events.filter({ hasText: "succeeded" }).waitFor();
    const names = await events.locator(".badge").allTextContents();
    expect(names[0]).toBe("queued");
    expect(names).toContain("progress");
    expect(names.at(-1)).toBe("succeeded");
    expect(await naturalSize("#tab-jobs img.result")).toEqual([192, 128]);
    await screenshot(page, "job-detail");
    expect(errors).toEqual([]);
  });

  it("cancels a running generation", async () => {
    await page.goto(stack.baseUrl);
    await fillForm("text-to-image", {
      model: "sd-tiny",
      prompt: "slow",
      width: "512",
      height: "512",
      steps: "100",
    });
    const t2i = tab("text-to-image");
    await t2i.getByRole("button", { name: "Generate" }).click();
    await t2i
      .getByRole("status")
      .filter({ hasText: /Running: step \d+ of/ })
      .waitFor({ timeout: 60_000 });
    await t2i.getByRole("button", { name: "Cancel" }).click();
    await t2i.getByRole("status").filter({ hasText: "Canceled." }).waitFor({ timeout: 30_000 });
    expect(await t2i.getByRole("button", { name: "Cancel" }).count()).toBe(0);
    expect(await t2i.getByTestId("result-image").count()).toBe(0);
    const percent = Number.parseInt((await t2i.getByTestId("percent").textContent()) ?? "", 10);
    expect(percent).toBeLessThan(100);
    await screenshot(page, "cancel");

    // The jobs tab lists it as canceled, with the cancel's message.
    await page.goto(`${stack.baseUrl}/#/jobs`);
    const row = tab("jobs").locator("tbody tr").first();
    await row.locator(".badge.canceled").waitFor();
    expect(await row.textContent()).toContain("sd-tiny");
    await screenshot(page, "jobs");
    expect(errors).toEqual([]);
  });

  it("runs image-to-image from an uploaded file", async () => {
    await page.goto(`${stack.baseUrl}/#/image-to-image`);
    const i2i = tab("image-to-image");
    await page.locator("#image-to-image-image").setInputFiles({
      name: "gradient.png",
      mimeType: "image/png",
      buffer: await pngOf(160, 120),
    });
    await i2i.getByRole("img", { name: "Chosen image: gradient.png" }).waitFor();
    expect(await i2i.locator(".thumb figcaption").textContent()).toContain("160 × 120");
    await fillForm("image-to-image", {
      model: "sd-tiny",
      prompt: "in the snow",
      width: "96",
      height: "64",
      steps: "4",
    });
    await page.locator("#image-to-image-strength").fill("0.6");
    await i2i.getByRole("button", { name: "Generate" }).click();
    expect(await naturalSize("#tab-image-to-image [data-testid=result-image]")).toEqual([96, 64]);
    expect(await i2i.getByTestId("percent").textContent()).toBe("100 %");
    await screenshot(page, "image-to-image");
    expect(errors).toEqual([]);
  });

  it("shows the API's 400 message for a bad size (submitted from the keyboard)", async () => {
    await page.goto(stack.baseUrl);
    await fillForm("text-to-image", {
      model: "sd-tiny",
      prompt: "x",
      width: "100",
      height: "64",
      steps: "2",
    });
    await page.locator("#text-to-image-width").press("Enter");
    const alert = tab("text-to-image").getByRole("alert");
    await alert.waitFor();
    const text = (await alert.textContent()) ?? "";
    expect(text).toContain("width");
    expect(text).toContain("multiple of 8");
    expect(text).toContain("HTTP 400");
    expect(text).toContain("invalid_parameter");
    expect(await tab("text-to-image").getByRole("status").textContent()).toBe("Failed.");
    await screenshot(page, "bad-size");
    expect(errors).toEqual([]);
  });

  it("encodes an image with a VAE and decodes it back, side by side with the latent shape", async () => {
    await page.goto(`${stack.baseUrl}/#/vae`);
    await page.locator("#vae-model").selectOption("sd-v1-tiny");
    // Not a multiple of 8: the page redraws it at 96 × 72 first.
    await page
      .locator("#vae-image")
      .setInputFiles({ name: "in.png", mimeType: "image/png", buffer: await pngOf(100, 75) });
    await tab("vae").getByRole("img", { name: "Chosen image: in.png" }).waitFor();
    await tab("vae").getByRole("button", { name: "Encode and decode" }).click();
    await tab("vae").getByTestId("latent-shape").waitFor({ timeout: 60_000 });
    expect(await tab("vae").getByTestId("latent-shape").textContent()).toBe("1 × 4 × 9 × 12");
    expect(await naturalSize("#tab-vae [data-testid=vae-decoded]")).toEqual([96, 72]);
    expect(await tab("vae").locator(".pair figcaption").first().textContent()).toContain("96 × 72");
    await screenshot(page, "vae");
    expect(errors).toEqual([]);
  });

  it("fits a phone's width, with every control labelled", async () => {
    await context.close();
    ({ context, page, errors } = await openPage(browser, { phone: true }));
    await page.goto(stack.baseUrl);
    for (const id of ["text-to-image", "image-to-image", "vae", "jobs"]) {
      await page
        .getByRole("link", { name: new RegExp(`^${id === "vae" ? "VAE" : id.replace(/-/g, " ")}$`, "i") })
        .click();
      await tab(id).waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow, `horizontal overflow on ${id}`).toBeLessThanOrEqual(0);
    }
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input, select, textarea, button")]
        .filter((el) => {
          const labels = (el as HTMLInputElement).labels;
          const named = el.getAttribute("aria-label") || (el.tagName === "BUTTON" && el.textContent?.trim());
          return !named && (!labels || labels.length === 0);
        })
        .map((el) => el.outerHTML.slice(0, 80)),
    );
    expect(unlabelled).toEqual([]);

    await page.getByRole("link", { name: "Text to image" }).click();
    await fillForm("text-to-image", {
      model: "sd-tiny",
      prompt: "a red car",
      width: "128",
      height: "128",
      steps: "4",
      seed: "7",
    });
    await tab("text-to-image").getByRole("button", { name: "Generate" }).click();
    expect(await naturalSize("#tab-text-to-image [data-testid=result-image]")).toEqual([128, 128]);
    expect(
      await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth),
    ).toBeLessThanOrEqual(0);
    await screenshot(page, "phone", true);
    expect(errors).toEqual([]);
  });
});
