/** The playground's tabs, in the order the navigation shows them. */
export const TABS = [
  { id: "text-to-image", label: "Text to image" },
  { id: "image-to-image", label: "Image to image" },
  { id: "vae", label: "VAE" },
  { id: "jobs", label: "Jobs" },
] as const;

export type TabId = (typeof TABS)[number]["id"];

/** Where the page is: a tab, and on the jobs tab maybe one job. */
export interface Route {
  tab: TabId;
  /** `#/jobs/<id>`: the job opened on the jobs tab. */
  jobId?: string;
}

const TAB_IDS: ReadonlySet<string> = new Set(TABS.map((t) => t.id));

/**
 * The route of a location hash (`#/jobs/6f0c…`). Tabs live in the fragment, so the server
 * serves the page at `/` only and every other path stays the API's. Anything unknown is the
 * first tab.
 */
export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const [tab, id] = parts;
  if (!tab || !TAB_IDS.has(tab)) return { tab: "text-to-image" };
  if (tab === "jobs" && id) return { tab, jobId: safeDecode(id) };
  return { tab: tab as TabId };
}

/** The hash of a route: `#/vae`, `#/jobs/<id>`. */
export function routeHash(route: Route): string {
  return route.jobId ? `#/${route.tab}/${encodeURIComponent(route.jobId)}` : `#/${route.tab}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
