import { defineConfig } from "vite";

/** The API `pnpm start` runs; `pnpm --filter @hybrid/web dev` proxies every API route to it. */
const api = process.env.API_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  // Our workspace packages are bundled from their TypeScript sources (no dist/ needed first).
  resolve: { conditions: ["source"] },
  // Preact's JSX through esbuild: no Babel, no plugin.
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Small enough to ship without source maps; the sources are in the repository.
    sourcemap: false,
    reportCompressedSize: false,
    rollupOptions: {
      // zod's comments that Rollup cannot place: harmless, and noise in every `pnpm install`.
      onwarn(warning, warn) {
        if (warning.code !== "INVALID_ANNOTATION") warn(warning);
      },
    },
  },
  server: {
    proxy: Object.fromEntries(
      ["/v1", "/models", "/health", "/docs", "/openapi.json", "/admin", "/playground"].map((p) => [p, api]),
    ),
  },
});
