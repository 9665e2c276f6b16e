import { fileURLToPath } from "node:url";
import type { ViteUserConfig } from "vitest/config";

const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));
const app = (name: string, entry: string) =>
  fileURLToPath(new URL(`./apps/${name}/src/${entry}`, import.meta.url));

/** Tests run the TypeScript sources of our packages directly, never a stale dist/. */
export const shared: ViteUserConfig = {
  resolve: {
    alias: {
      "@hybrid/protocol": src("protocol"),
      "@hybrid/queue": src("queue"),
      "@hybrid/inference": src("inference"),
      "@hybrid/client": src("client"),
      "@hybrid/worker": app("worker", "public-api.ts"),
    },
  },
  test: {
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
};
