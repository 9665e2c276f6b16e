import { defineConfig } from "vitest/config";
import { shared } from "../vitest.shared.ts";

export default defineConfig({
  ...shared,
  test: {
    ...shared.test,
    include: ["test/e2e/**/*.test.ts", "test/browser/**/*.test.ts"],
    root: new URL("..", import.meta.url).pathname,
    // These start real processes (API, worker, redis-server, Chromium) on a 2-core machine: one file at a time.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
