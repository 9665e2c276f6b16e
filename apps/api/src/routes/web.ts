import { stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { AppError, type PlaygroundConfig } from "@hybrid/protocol";
import express, { Router } from "express";

/**
 * The folder of the playground's build (`@hybrid/web`'s `dist/`: apps/web/dist in a checkout,
 * node_modules/@hybrid/web/dist in a deployed image), or null when the package is not installed.
 */
export function defaultWebDir(): string | null {
  try {
    return join(dirname(createRequire(import.meta.url).resolve("@hybrid/web/package.json")), "dist");
  } catch {
    return null;
  }
}

export interface WebOptions {
  /** The built playground: `index.html` and hashed files under `assets/`. */
  dir: string;
  /** Read at each request of the config: keys can be switched on while the API runs. */
  config: () => Promise<PlaygroundConfig>;
}

// The page loads nothing from elsewhere (no CDN, no web fonts), so it works offline; previews
// arrive as data: URLs and results are shown from blob: URLs.
const CSP = [
  "default-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob:",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Files at the top of the build that are served as they are (icons); everything else is under assets/. */
const TOP_LEVEL_FILE = /^\/[\w-]+\.(?:svg|png|ico|webmanifest)$/;

const NOT_BUILT = `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>hybrid-inference</title>
  </head>
  <body>
    <h1>The playground is not built</h1>
    <p>Build it with <code>pnpm --filter @hybrid/web build</code> (<code>pnpm install</code> and
    <code>pnpm start</code> do it), then reload. The API itself is up: <a href="/docs">/docs</a>,
    <a href="/v1/models">/v1/models</a>.</p>
  </body>
</html>
`;

const exists = (path: string) =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  );

/**
 * The playground: `GET /` (its page), `/assets/*` (the bundle, content-hashed: cached for good),
 * its icons, and `GET /playground/config.json`. Mounted before auth: the page itself is public
 * and asks for a key; every API call it makes still needs one. Tabs live in the URL's fragment
 * (`/#/jobs`), so no other path needs the page: unknown paths keep answering JSON 404s.
 */
export function webRoutes(opts: WebOptions): Router {
  const router = Router();
  const index = join(opts.dir, "index.html");

  router.get("/", async (req, res) => {
    if (!(await exists(index))) {
      if (req.accepts(["json", "html"]) !== "html")
        throw new AppError(
          "unavailable",
          "The playground is not built: run pnpm --filter @hybrid/web build.",
        );
      res.status(503).setHeader("Retry-After", "10");
      res.type("html").send(NOT_BUILT);
      return;
    }
    res.setHeader("Content-Security-Policy", CSP);
    res.setHeader("X-Content-Type-Options", "nosniff");
    res.setHeader("Referrer-Policy", "no-referrer");
    // Always revalidated: a new build changes the hashed asset names it points at.
    res.sendFile(index, { headers: { "Cache-Control": "no-cache" } });
  });

  router.get("/playground/config.json", async (_req, res) => {
    res.setHeader("Cache-Control", "no-store");
    res.json(await opts.config());
  });

  router.use(
    "/assets",
    express.static(join(opts.dir, "assets"), {
      index: false,
      redirect: false,
      immutable: true,
      maxAge: "365d",
    }),
  );
  const top = express.static(opts.dir, { index: false, redirect: false, maxAge: "1d" });
  router.use((req, res, next) =>
    req.method === "GET" && TOP_LEVEL_FILE.test(req.path) ? top(req, res, next) : next(),
  );
  return router;
}
