import { defineConfig } from "vitest/config";
import { shared } from "../../vitest.shared.ts";

// Unit tests of the page's logic (no DOM): state, parsing and formatting run in Node.
export default defineConfig({
  ...shared,
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
});
