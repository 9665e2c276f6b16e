import { createRequire } from "node:module";
import { dirname } from "node:path";
import express, { Router } from "express";
import { openApiDocument } from "../openapi.ts";

/** swagger-ui-dist's folder: its CSS, JS bundle and icons are served from here, never from a CDN. */
const SWAGGER_UI_DIR = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist"));

/** Only the UI's assets: not the package's own index.html, whose initializer loads the petstore. */
const ASSET = /^\/[\w.-]+\.(?:css|js|png|map)$/;

const PAGE = `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>hybrid-inference API</title>
    <link rel="stylesheet" href="/docs/swagger-ui.css" />
    <link rel="stylesheet" href="/docs/index.css" />
    <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
`;

// validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
const INIT = `window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
`;

/**
 * `GET /openapi.json` (the OpenAPI 3.1 document) and `GET /docs` (Swagger UI on it, with every
 * asset served from swagger-ui-dist here, so it works offline). Mounted before auth: the API's
 * description is public, like the HF endpoints it mirrors; calling the routes still needs a key.
 */
export function docsRoutes(): Router {
  const router = Router();
  router.get("/openapi.json", (_req, res) => {
    res.json(openApiDocument());
  });
  router.get("/docs", (_req, res) => {
    res.type("html").send(PAGE);
  });
  router.get("/docs/init.js", (_req, res) => {
    res.type("js").send(INIT);
  });
  const assets = express.static(SWAGGER_UI_DIR, { index: false, redirect: false });
  router.use("/docs", (req, res, next) => (ASSET.test(req.path) ? assets(req, res, next) : next()));
  return router;
}
