import { request } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorHandler, notFound } from "./errors.ts";
import {
  type AllowedHost,
  allowedHostsOf,
  hostAllowed,
  isLoopbackHost,
  LOOPBACK_NAMES,
  requestGuard,
  startupRefusal,
} from "./exposure.ts";

describe("isLoopbackHost", () => {
  it("knows loopback addresses and names from the rest", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "api.localhost"])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.com", "::ffff:10.0.0.1"])
      expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe("startupRefusal", () => {
  const base = {
    host: "127.0.0.1",
    keysEnabled: false,
    allowAnonymous: false,
    keysFile: "/srv/keys.json",
    keysFileExplicit: false,
    keysFileExists: false,
  };

  it("lets the quick start run open on loopback without a keys file", () => {
    expect(startupRefusal(base)).toBeNull();
    expect(startupRefusal({ ...base, host: "::1" })).toBeNull();
  });

  it("refuses a network address without keys unless ALLOW_ANONYMOUS says so", () => {
    const why = startupRefusal({ ...base, host: "0.0.0.0" });
    expect(why).toMatch(
      /HOST=0\.0\.0\.0.*no API keys.*pnpm keys create.*HOST=127\.0\.0\.1.*ALLOW_ANONYMOUS=true/,
    );
    expect(startupRefusal({ ...base, host: "0.0.0.0", allowAnonymous: true })).toBeNull();
    expect(startupRefusal({ ...base, host: "0.0.0.0", keysEnabled: true, keysFileExists: true })).toBeNull();
  });

  it("refuses a keys file that was named but is missing, wherever it listens", () => {
    const missing = { ...base, keysFileExplicit: true };
    expect(startupRefusal(missing)).toMatch(/API_KEYS_FILE names \/srv\/keys\.json, which does not exist/);
    expect(startupRefusal({ ...missing, allowAnonymous: true, host: "0.0.0.0" })).toMatch(/API_KEYS_FILE/);
    expect(startupRefusal({ ...missing, keysFileExists: true })).toBeNull();
  });
});

describe("allowedHostsOf / hostAllowed", () => {
  it("answers the loopback names (any port) by default on loopback, any host elsewhere", () => {
    const loop = allowedHostsOf(undefined, "127.0.0.1");
    expect(loop).toEqual(LOOPBACK_NAMES);
    for (const h of ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "localhost", "LocalHost:1"])
      expect(hostAllowed(h, loop), h).toBe(true);
    for (const h of ["attacker.example:8080", "attacker.example", "127.0.0.1.nip.io:8080", undefined, ""])
      expect(hostAllowed(h, loop), String(h)).toBe(false);
    expect(allowedHostsOf(undefined, "0.0.0.0")).toBeNull();
    expect(allowedHostsOf("", "0.0.0.0")).toBeNull();
    expect(hostAllowed("anything.example", null)).toBe(true);
  });

  it("takes names, name:port, bare IPv6 and * from ALLOWED_HOSTS", () => {
    const set = allowedHostsOf("api.example.com, internal:8080, ::1", "0.0.0.0") as AllowedHost[];
    expect(hostAllowed("api.example.com", set)).toBe(true);
    expect(hostAllowed("API.example.com:443", set)).toBe(true);
    expect(hostAllowed("internal:8080", set)).toBe(true);
    expect(hostAllowed("internal:9090", set)).toBe(false);
    expect(hostAllowed("[::1]:8080", set)).toBe(true);
    expect(hostAllowed("localhost:8080", set)).toBe(false);
    expect(allowedHostsOf("a.example,*", "127.0.0.1")).toBeNull();
  });
});

describe("requestGuard", () => {
  let port: number;
  let keysEnabled = false;
  let close: () => void = () => {};

  beforeAll(async () => {
    const app = express()
      .use(requestGuard({ allowedHosts: LOOPBACK_NAMES, keysEnabled: () => keysEnabled }))
      .get("/health/live", (_req, res) => void res.json({ ok: true }))
      .get("/v1/jobs", (_req, res) => void res.json({ data: [] }))
      .post("/v1/vae/m/decode", (_req, res) => void res.json({ ok: true }))
      .use(notFound)
      .use(errorHandler);
    const server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    port = (server.address() as AddressInfo).port;
    close = () => server.close();
  });
  afterAll(() => close());

  /** A request with exactly these headers (fetch cannot set Host). */
  const send = (method: string, path: string, headers: Record<string, string>, body?: string) =>
    new Promise<{ status: number; body: { code?: string; error?: string } }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, method, path, headers }, (res) => {
        let text = "";
        res.on("data", (d: Buffer) => {
          text += d.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      });
      req.on("error", reject);
      req.end(body);
    });

  it("refuses another Host (DNS rebinding) with 403 JSON, except on the probes", async () => {
    const ok = await send("GET", "/v1/jobs", { Host: `localhost:${port}` });
    expect(ok.status).toBe(200);
    const rebound = await send("GET", "/v1/jobs", { Host: `attacker.example:${port}` });
    expect(rebound.status).toBe(403);
    expect(rebound.body.code).toBe("forbidden");
    expect(rebound.body.error).toMatch(/ALLOWED_HOSTS/);
    expect((await send("GET", "/health/live", { Host: "10.1.2.3:8080" })).status).toBe(200);
  });

  it("refuses the content types a cross-site form or text POST carries with 415", async () => {
    for (const type of [
      "text/plain",
      "text/plain;charset=UTF-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]) {
      const res = await send(
        "POST",
        "/v1/vae/m/decode",
        { Host: `127.0.0.1:${port}`, "Content-Type": type },
        "x",
      );
      expect(res.status, type).toBe(415);
      expect(res.body.code).toBe("unsupported_media_type");
    }
    // What real clients send: diffusers' tensor/binary, no type at all (encode), JSON, images, octet-stream.
    for (const type of [
      "tensor/binary",
      "application/json",
      "image/png",
      "application/octet-stream",
      undefined,
    ]) {
      const headers: Record<string, string> = { Host: `127.0.0.1:${port}` };
      if (type) headers["Content-Type"] = type;
      expect((await send("POST", "/v1/vae/m/decode", headers, "x")).status, String(type)).toBe(200);
    }
  });

  it("refuses another site's page while there are no keys, not this service's own", async () => {
    const host = `127.0.0.1:${port}`;
    const headers = { Host: host, "Content-Type": "application/json" };
    const foreign = await send(
      "POST",
      "/v1/vae/m/decode",
      { ...headers, Origin: "https://attacker.example" },
      "{}",
    );
    expect(foreign.status).toBe(403);
    expect(foreign.body.code).toBe("forbidden");
    expect((await send("POST", "/v1/vae/m/decode", { ...headers, Origin: "null" }, "{}")).status).toBe(403);
    expect(
      (await send("POST", "/v1/vae/m/decode", { ...headers, Origin: `http://${host}` }, "{}")).status,
    ).toBe(200);
    keysEnabled = true;
    try {
      // With keys the request still needs one: the Origin says nothing more.
      expect(
        (await send("POST", "/v1/vae/m/decode", { ...headers, Origin: "https://app.example" }, "{}")).status,
      ).toBe(200);
    } finally {
      keysEnabled = false;
    }
  });
});
