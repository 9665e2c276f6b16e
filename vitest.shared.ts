import { fileURLToPath } from "node:url";
import type { ViteUserConfig } from "vitest/config";

const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));
const appSrc = (app: string, file: string) =>
  fileURLToPath(new URL(`./apps/${app}/src/${file}`, import.meta.url));

/** Tests run the TypeScript sources of our packages directly, never a stale dist/. */
export const shared: ViteUserConfig = {
  resolve: {
    alias: {
      "@hybrid/protocol": src("protocol"),
      "@hybrid/queue": src("queue"),
      "@hybrid/service": src("service"),
      "@hybrid/inference": src("inference"),
      "@hybrid/model-tools": src("model-tools"),
      "@hybrid/client": src("client"),
      "@hybrid/testing/vitest": fileURLToPath(new URL("./packages/testing/src/vitest.ts", import.meta.url)),
      "@hybrid/testing": src("testing"),
      // The apps export only their env schema (for the manifests' test).
      "@hybrid/api/env": appSrc("api", "env.ts"),
      "@hybrid/worker/env": appSrc("worker", "env.ts"),
      "@hybrid/worker": appSrc("worker", "public-api.ts"),
    },
  },
  test: {
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
};
