// The playground's build (apps/web → apps/web/dist, served by the API at /). `pnpm install` builds
// it (the root postinstall); `pnpm start` and the browser tests call ensureWebBuild() so a checkout
// whose web sources changed since (a pull, an edit, an install with --ignore-scripts) is rebuilt
// before it is served.
import { spawn } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { repoRoot } from "./lib.ts";

export const WEB_DIR = join(repoRoot, "apps", "web");
export const WEB_INDEX = join(WEB_DIR, "dist", "index.html");

/** What the bundle is made of: the page's sources and the workspace packages it bundles. */
const INPUTS = [
  join(WEB_DIR, "src"),
  join(WEB_DIR, "public"),
  join(WEB_DIR, "index.html"),
  join(WEB_DIR, "vite.config.ts"),
  join(WEB_DIR, "package.json"),
  join(repoRoot, "packages", "client", "src"),
  join(repoRoot, "packages", "protocol", "src"),
];

/** The newest modification time (ms) under a file or folder; 0 when it does not exist. */
async function newest(path: string): Promise<number> {
  const s = await stat(path).catch(() => null);
  if (!s) return 0;
  if (!s.isDirectory()) return s.mtimeMs;
  const entries = await readdir(path, { withFileTypes: true });
  const times = await Promise.all(entries.map((e) => newest(join(path, e.name))));
  return Math.max(s.mtimeMs, ...times);
}

/** Why the build must be (re)made, or null when dist/ is newer than every input. */
export async function webBuildStale(): Promise<string | null> {
  const built = await stat(WEB_INDEX).catch(() => null);
  if (!built) return "apps/web/dist is missing";
  const inputs = Math.max(...(await Promise.all(INPUTS.map(newest))));
  return inputs > built.mtimeMs ? "apps/web changed since its last build" : null;
}

/** Runs `vite build` in apps/web (Vite's own binary: no pnpm needed); rejects when it fails. */
export function buildWeb(stdio: "inherit" | "ignore" = "inherit"): Promise<void> {
  const vitePkg = createRequire(join(WEB_DIR, "package.json")).resolve("vite/package.json");
  const bin = join(dirname(vitePkg), "bin", "vite.js");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, "build", "--logLevel", "warn"], { cwd: WEB_DIR, stdio });
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`vite build of apps/web exited with code ${code}`)),
    );
  });
}

/** Builds the playground when it is missing or older than its sources; returns why it built, or null. */
export async function ensureWebBuild(stdio: "inherit" | "ignore" = "inherit"): Promise<string | null> {
  const why = await webBuildStale();
  if (why) await buildWeb(stdio);
  return why;
}
