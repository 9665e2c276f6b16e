import { PassThrough } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { createLogger, lazyChild } from "./logger.ts";

function capture(tty: boolean, level = "info") {
  const out = new PassThrough();
  let text = "";
  out.on("data", (d: Buffer) => {
    text += d.toString();
  });
  return { logger: createLogger("api", level, { tty, destination: out }), text: () => text };
}

/** Lines written so far, complete ones only (pino-pretty writes through a stream of its own). */
const completeLines = (text: string) => text.split("\n").slice(0, -1);

describe("createLogger", () => {
  const secret = "hik_s3cr3t-value";

  it("writes one JSON object per line, with secrets redacted wherever they sit", async () => {
    const { logger, text } = capture(false);
    logger.info(
      { req: { headers: { authorization: `Bearer ${secret}` } }, key: secret },
      "request completed",
    );
    logger.info({ record: { webhook_secret: secret, name: "alice" } }, "key loaded");
    await expect.poll(() => completeLines(text())).toHaveLength(2);
    const lines = completeLines(text());
    const first = JSON.parse(lines[0]!);
    expect(first).toMatchObject({ app: "api", msg: "request completed", key: "[redacted]" });
    expect(first.req.headers.authorization).toBe("[redacted]");
    expect(JSON.parse(lines[1]!).record).toEqual({ webhook_secret: "[redacted]", name: "alice" });
    expect(text()).not.toContain(secret);
  });

  it("writes human-readable lines (not JSON) for a terminal, still redacted", async () => {
    const { logger, text } = capture(true);
    logger.info({ authorization: secret, jobId: "j1" }, "job done");
    // The message, then its fields: the whole entry is there once "j1" is.
    await expect.poll(text).toMatch(/job done[\s\S]*j1/);
    expect(() => JSON.parse(text().trim())).toThrow();
    expect(text()).not.toContain(secret);
  });

  it("writes one line per entry for a terminal: a request log with nested fields stays on its line", async () => {
    const { logger, text } = capture(true);
    const req = { id: "r1", method: "POST", url: "/v1/vae/sd/decode" };
    logger.info({ req, res: { status: 200, jobId: "j1" }, responseTime: 12 }, "request completed");
    logger.info({ req: { ...req, id: "r2" }, res: { status: 404 } }, "request completed");
    await expect.poll(() => completeLines(text())).toHaveLength(2);
    const [first, second] = completeLines(text());
    expect(first).toMatch(/request completed.*r1.*\/v1\/vae\/sd\/decode.*200.*j1/);
    expect(second).toMatch(/request completed.*r2.*404/);
  });

  it("masks the password of a Redis URL in messages and errors, JSON or terminal", async () => {
    for (const tty of [false, true]) {
      const { logger, text } = capture(tty);
      const url = "redis://default:hunter2@redis.internal:6379";
      logger.warn({ err: new Error(`connect to ${url} failed`).message, url }, `redis error at ${url}`);
      logger.error({ err: new Error(`ioredis: ${url}`) }, "failed");
      await expect.poll(text).toMatch(/failed[\s\S]*ioredis/);
      expect(text()).not.toContain("hunter2");
      expect(text()).toContain("redis://default:***@redis.internal:6379");
    }
  });
});

describe("lazyChild", () => {
  it("writes lines with its bindings (redacted) like a child, and makes no child for disabled levels", async () => {
    const { logger, text } = capture(false, "info");
    const made = vi.spyOn(logger, "child");
    const log = lazyChild(logger, { jobId: "j1", key: "hik_s3cr3t" });
    log.debug("not written");
    expect(made).not.toHaveBeenCalled();
    log.info({ step: 1 }, "job started");
    log.warn("slow");
    expect(made).toHaveBeenCalledTimes(1);
    log.child({ a: 1 }).info("nested");
    await expect.poll(() => completeLines(text())).toHaveLength(3);
    const [first, second, third] = completeLines(text()).map((l) => JSON.parse(l));
    expect(first).toMatchObject({ jobId: "j1", key: "[redacted]", step: 1, msg: "job started" });
    expect(second).toMatchObject({ jobId: "j1", msg: "slow", level: 40 });
    expect(third).toMatchObject({ jobId: "j1", a: 1, msg: "nested" });
    expect(text()).not.toContain("hik_s3cr3t");
    expect(log.isLevelEnabled("debug")).toBe(false);
  });
});
