import type { AddressInfo } from "node:net";
import type { ModelInfo } from "@hybrid/protocol";
import { Queues } from "@hybrid/queue";
import { sdV1Generation, sdV1Model } from "@hybrid/testing";
import { useTestRedis } from "@hybrid/testing/vitest";
import express from "express";
import type { Logger } from "pino";
import { afterAll, describe, expect, it, vi } from "vitest";
import { dashboardAccess, dashboardRoutes, FailureLimiter, presentedSecret } from "./dashboard.ts";
import { errorHandler, notFound } from "./errors.ts";

const model = (id: string, generation: boolean): ModelInfo =>
  sdV1Model({ id, ...(generation ? { generation: sdV1Generation() } : {}) });

const REFRESH_MS = 200;
const db = useTestRedis("api-dashboard");
const queues = new Queues(db.url, db.prefix);
const servers: { close(): void }[] = [];
afterAll(async () => {
  for (const s of servers) s.close();
  await queues.close();
});

/** The dashboard alone in an app with the API's 404 and error handler, listening on a free port. */
async function serve(opts: {
  keysEnabled: boolean;
  adminKey?: string;
  models: ModelInfo[];
  logger?: Logger;
  failuresPerMinute?: number;
}) {
  const keys = { enabled: opts.keysEnabled, refresh: async () => {} };
  const directory = { calls: 0, models: async () => new Map(opts.models.map((m) => [m.id, m])) };
  const counted = {
    models: async () => {
      directory.calls++;
      return directory.models();
    },
  };
  const app = express()
    .use(
      dashboardRoutes({
        queues,
        adminKey: opts.adminKey,
        refreshMs: REFRESH_MS,
        directory: counted,
        keys,
        ...(opts.logger ? { logger: opts.logger } : {}),
        ...(opts.failuresPerMinute ? { failuresPerMinute: opts.failuresPerMinute } : {}),
      }),
    )
    .use(notFound)
    .use(errorHandler);
  const server = app.listen(0, "127.0.0.1");
  servers.push(server);
  await new Promise((r) => server.once("listening", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const names = async (headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}/admin/queues/api/queues`, { headers });
    expect(res.status).toBe(200);
    return ((await res.json()) as { queues: { name: string }[] }).queues.map((q) => q.name);
  };
  return { base, keys, directory, names, models: opts.models };
}

describe("dashboardAccess", () => {
  it("is open without keys, off with keys, and needs the admin key whenever one is set", () => {
    expect(dashboardAccess(false, undefined)).toBe("open");
    expect(dashboardAccess(true, undefined)).toBe("off");
    expect(dashboardAccess(true, "k".repeat(16))).toBe("admin-key");
    expect(dashboardAccess(false, "k".repeat(16))).toBe("admin-key");
  });
});

describe("presentedSecret", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  it("reads a bearer token, or the password of HTTP Basic", () => {
    expect(presentedSecret("Bearer abc")).toBe("abc");
    expect(presentedSecret("bearer   abc ")).toBe("abc");
    expect(presentedSecret(`Basic ${b64("user:pa:ss")}`)).toBe("pa:ss");
    expect(presentedSecret(`basic ${b64(":secret")}`)).toBe("secret");
  });
  it("gives nothing for other schemes and malformed Basic", () => {
    expect(presentedSecret(undefined)).toBeUndefined();
    expect(presentedSecret("")).toBeUndefined();
    expect(presentedSecret("Token abc")).toBeUndefined();
    expect(presentedSecret("Bearer")).toBeUndefined();
    expect(presentedSecret(`Basic ${b64("no-colon")}`)).toBeUndefined();
  });
});

describe("dashboardRoutes", () => {
  it("lists each live model's queues and the webhook queue, re-read at most every refreshMs", async () => {
    // Only Date is faked: the refresh reads Date.now(), and the clock moves when the test says
    // so, however long the requests take on a busy machine (sockets and Redis keep real timers).
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      const d = await serve({ keysEnabled: false, models: [model("vae-only", false), model("pipe", true)] });
      expect(await d.names()).toEqual([
        "decode-pipe",
        "encode-pipe",
        "generate-pipe",
        "decode-vae-only",
        "encode-vae-only",
        "webhooks",
      ]);
      vi.setSystemTime(Date.now() + REFRESH_MS - 1);
      await d.names();
      await d.names();
      expect(d.directory.calls).toBe(1);
      d.models.splice(0, 1);
      vi.setSystemTime(Date.now() + 1);
      expect(await d.names()).toEqual(["decode-pipe", "encode-pipe", "generate-pipe", "webhooks"]);
      expect(d.directory.calls).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("turns off (404) when keys appear and there is no admin key", async () => {
    const d = await serve({ keysEnabled: false, models: [model("m", false)] });
    expect((await fetch(`${d.base}/admin/queues`)).status).toBe(200);
    d.keys.enabled = true;
    for (const path of ["/admin/queues", "/admin/queues/api/queues"]) {
      const res = await fetch(`${d.base}${path}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe("not_found");
    }
  });

  it("needs the admin key when one is set, even without API keys", async () => {
    const adminKey = "a".repeat(32);
    const d = await serve({ keysEnabled: false, adminKey, models: [model("m", false)] });
    const none = await fetch(`${d.base}/admin/queues`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Basic /);
    expect(await d.names({ Authorization: `Bearer ${adminKey}` })).toContain("decode-m");
  });

  it("is never framed by another page, whatever the answer", async () => {
    const d = await serve({ keysEnabled: false, adminKey: "a".repeat(32), models: [] });
    const asks: Record<string, string>[] = [{}, { Authorization: `Bearer ${"a".repeat(32)}` }];
    for (const headers of asks) {
      const res = await fetch(`${d.base}/admin/queues`, { headers });
      expect(res.headers.get("content-security-policy")).toBe("frame-ancestors 'none'");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
    }
  });

  it("logs wrong admin keys and answers 429 after too many from one address", async () => {
    const adminKey = "b".repeat(32);
    const warned: unknown[] = [];
    const logger = { warn: (fields: unknown) => warned.push(fields) } as unknown as Logger;
    const d = await serve({ keysEnabled: true, adminKey, models: [], logger, failuresPerMinute: 3 });
    // A browser's first request carries no key: that is a prompt, not a failure.
    expect((await fetch(`${d.base}/admin/queues`)).status).toBe(401);
    expect(warned).toEqual([]);
    for (let i = 1; i <= 3; i++) {
      const res = await fetch(`${d.base}/admin/queues`, { headers: { Authorization: `Bearer wrong-${i}` } });
      expect(res.status).toBe(401);
    }
    expect(warned).toHaveLength(3);
    expect(warned[2]).toMatchObject({ client: "127.0.0.1", path: "/admin/queues", failures: 3 });
    // Now even the right key waits: guessing stays slow.
    const limited = await fetch(`${d.base}/admin/queues/api/queues`, {
      headers: { Authorization: `Bearer ${adminKey}` },
    });
    expect(limited.status).toBe(429);
    expect(((await limited.json()) as { code: string }).code).toBe("rate_limited");
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});

describe("FailureLimiter", () => {
  it("blocks an address after its limit within a window, and forgets it after", () => {
    let now = 0;
    const limiter = new FailureLimiter(2, 60_000, () => now);
    expect(limiter.blockedFor("a")).toBe(0);
    limiter.fail("a");
    expect(limiter.blockedFor("a")).toBe(0);
    limiter.fail("a");
    expect(limiter.blockedFor("a")).toBe(60);
    expect(limiter.blockedFor("b")).toBe(0);
    now = 59_500;
    expect(limiter.blockedFor("a")).toBe(1);
    now = 60_000;
    expect(limiter.blockedFor("a")).toBe(0);
    expect(limiter.fail("a")).toBe(1);
  });
});
