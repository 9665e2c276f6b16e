// Import boundaries between the workspace packages (`pnpm lint` runs it over apps, packages, test
// and scripts). A package's package.json `exports` is its only door: code outside a package reaches
// it by name (`@hybrid/queue`, `@hybrid/api/env`), never by a path into its `src/`.

/** @type {import("dependency-cruiser").IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-deep-import",
      severity: "error",
      comment:
        "Reach another workspace package through its package.json `exports` (import it by name), " +
        "not by a path into its src/.",
      from: {
        // $1: the package (or test/, scripts/, a root file) the importing file belongs to.
        path: "^((?:apps|packages)/[^/]+/|test/|scripts/|[^/]+$)",
      },
      to: {
        // Only a relative path lands here from outside: an import by name goes through the
        // `exports` map, which the next rule holds to.
        dependencyTypes: ["local"],
        path: "^(?:apps|packages)/[^/]+/src/",
        pathNot: "^$1",
      },
    },
    {
      name: "testing-only-in-tests",
      severity: "error",
      comment: "@hybrid/testing holds test fixtures: tests and benches use it, shipped code never does.",
      from: { pathNot: ["[.]test[.]tsx?$", "[.]bench[.]ts$", "^test/", "^packages/testing/"] },
      to: { path: "^packages/testing/" },
    },
    {
      name: "not-to-unresolvable",
      severity: "error",
      comment:
        "An import that does not resolve: with `exports` in force this is also how a subpath a " +
        "package does not export shows up (`@hybrid/inference/src/...`).",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(node_modules|dist|[.]turbo)/" },
    // Type-only imports cross the boundary as much as value imports do.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.base.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      // What tsc and the tests resolve with: the "source" condition points at src/.
      conditionNames: ["source", "import", "types", "node", "default"],
      mainFields: ["module", "main", "types"],
      extensions: [".ts", ".tsx", ".js", ".mjs", ".cjs", ".json"],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
