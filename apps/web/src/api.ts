import { HybridClient } from "@hybrid/client";
import type { PlaygroundConfig } from "@hybrid/protocol";

/** An API that predates the config route: no keys assumed (a 401 still brings the key prompt). */
const FALLBACK: PlaygroundConfig = { api_keys: false, dashboard: false, docs: true };

/** The page's config; never rejects (the API's own answers tell the rest). */
export async function loadConfig(fetchImpl: typeof fetch = fetch): Promise<PlaygroundConfig> {
  try {
    const res = await fetchImpl("/playground/config.json", { headers: { Accept: "application/json" } });
    if (!res.ok) return FALLBACK;
    return { ...FALLBACK, ...((await res.json()) as Partial<PlaygroundConfig>) };
  } catch {
    return FALLBACK;
  }
}

/** A client of the API that served the page, sending the key (when there is one) as a bearer token. */
export const clientFor = (apiKey: string | null, baseUrl: string = location.origin): HybridClient =>
  new HybridClient(apiKey ? { baseUrl, apiKey } : { baseUrl });

/** Session storage's name for the key: kept for the tab's life, never written to disk for long. */
export const KEY_ITEM = "hybrid-inference.api-key";

/** The key this tab was given earlier, if any (storage may be off: private modes, policies). */
export function storedKey(storage: Pick<Storage, "getItem"> | undefined): string | null {
  try {
    return storage?.getItem(KEY_ITEM) || null;
  } catch {
    return null;
  }
}

/** Keeps the key for this tab, or forgets it (null). */
export function storeKey(
  storage: Pick<Storage, "setItem" | "removeItem"> | undefined,
  key: string | null,
): void {
  try {
    if (key) storage?.setItem(KEY_ITEM, key);
    else storage?.removeItem(KEY_ITEM);
  } catch {
    // No storage: the key lasts until the page is reloaded.
  }
}

/** The session storage, when the browser lets the page have it. */
export function sessionStore(): Storage | undefined {
  try {
    return globalThis.sessionStorage;
  } catch {
    return undefined;
  }
}
