import { afterEach, describe, expect, it, vi } from "vitest";
import { clientFor, KEY_ITEM, loadConfig, storedKey, storeKey } from "./api.ts";

class MemoryStorage {
  items = new Map<string, string>();
  getItem = (k: string) => this.items.get(k) ?? null;
  setItem = (k: string, v: string) => void this.items.set(k, v);
  removeItem = (k: string) => void this.items.delete(k);
}

const answer = (status: number, body: unknown) => async () =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

describe("the page's config", () => {
  it("reads the API's answer, and assumes an open API when there is none", async () => {
    const on = { api_keys: true, dashboard: false, docs: true };
    expect(await loadConfig(answer(200, on))).toEqual(on);
    const fallback = { api_keys: false, dashboard: false, docs: true };
    expect(await loadConfig(answer(404, { error: "No route", code: "not_found" }))).toEqual(fallback);
    expect(
      await loadConfig(async () => {
        throw new TypeError("Failed to fetch");
      }),
    ).toEqual(fallback);
  });
});

describe("the API key", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("is kept in session storage and forgotten on demand", () => {
    const storage = new MemoryStorage();
    expect(storedKey(storage)).toBeNull();
    storeKey(storage, "hik_abc");
    expect(storage.items.get(KEY_ITEM)).toBe("hik_abc");
    expect(storedKey(storage)).toBe("hik_abc");
    storeKey(storage, null);
    expect(storedKey(storage)).toBeNull();
  });

  it("survives a browser that refuses storage", () => {
    const refusing = {
      getItem: () => {
        throw new DOMException("denied", "SecurityError");
      },
      setItem: () => {
        throw new DOMException("denied", "SecurityError");
      },
      removeItem: () => {},
    };
    expect(storedKey(refusing)).toBeNull();
    expect(() => storeKey(refusing, "k")).not.toThrow();
    expect(storedKey(undefined)).toBeNull();
  });

  it("is sent as a bearer token", async () => {
    const seen: Headers[] = [];
    const fetchSpy: typeof fetch = async (_url, init) => {
      seen.push(new Headers(init?.headers));
      return new Response(JSON.stringify({ object: "list", data: [] }), {
        headers: { "Content-Type": "application/json" },
      });
    };
    vi.stubGlobal("fetch", fetchSpy);
    await clientFor("hik_abc", "http://api.test").models();
    await clientFor(null, "http://api.test").models();
    expect(seen.map((h) => h.get("authorization"))).toEqual(["Bearer hik_abc", null]);
  });
});
