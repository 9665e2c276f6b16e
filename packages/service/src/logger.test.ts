import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "./logger.ts";

function capture(tty: boolean) {
  const out = new PassThrough();
  let text = "";
  out.on("data", (d: Buffer) => {
    text += d.toString();
  });
  return { logger: createLogger("api", "info", { tty, destination: out }), text: () => text };
}

const flush = () => new Promise((r) => setTimeout(r, 50));

describe("createLogger", () => {
  const secret = "hik_s3cr3t-value";

  it("writes one JSON object per line, with secrets redacted wherever they sit", async () => {
    const { logger, text } = capture(false);
    logger.info(
      { req: { headers: { authorization: `Bearer ${secret}` } }, key: secret },
      "request completed",
    );
    logger.info({ record: { webhook_secret: secret, name: "alice" } }, "key loaded");
    await flush();
    const lines = text().trim().split("\n");
    expect(lines).toHaveLength(2);
    const first = JSON.parse(lines[0]!);
    expect(first).toMatchObject({ app: "api", msg: "request completed", key: "[redacted]" });
    expect(first.req.headers.authorization).toBe("[redacted]");
    expect(JSON.parse(lines[1]!).record).toEqual({ webhook_secret: "[redacted]", name: "alice" });
    expect(text()).not.toContain(secret);
  });

  it("writes human-readable lines (not JSON) for a terminal, still redacted", async () => {
    const { logger, text } = capture(true);
    logger.info({ authorization: secret, jobId: "j1" }, "job done");
    await flush();
    expect(text()).toContain("job done");
    expect(text()).toContain("j1");
    expect(() => JSON.parse(text().trim())).toThrow();
    expect(text()).not.toContain(secret);
  });
});
