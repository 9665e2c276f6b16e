// What the documents say about the API against what the code does, for the facts that drifted
// before: which routes need no key, the Server-Timing names, which settings exist, and which
// schedulers a request may name.
import { readFileSync } from "node:fs";
import { type JobResult, SchedulerName } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { Env } from "./env.ts";
import { serverTiming } from "./job-submit.ts";
import { openApiDocument, PUBLIC_ROUTES } from "./openapi.ts";

const doc = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), "utf8");
/** Markdown wraps lines anywhere: compare with all whitespace runs as one space. */
const flat = (text: string) => text.replace(/\s+/g, " ");

describe("the documents agree with the code", () => {
  it.each(["README.md", "docs/configuration.md", "docs/protocol.md", "docs/async-api.md"])(
    "%s lists the routes that need no key as the OpenAPI description does",
    (path) => {
      expect(flat(doc(path)).includes(PUBLIC_ROUTES), `${path} says: ${PUBLIC_ROUTES}`).toBe(true);
      expect(openApiDocument().info.description).toContain(PUBLIC_ROUTES);
    },
  );

  it("docs/protocol.md names every Server-Timing entry the API sends, and its example is one", () => {
    const base: JobResult = { result: "r", contentType: "image/png", bytes: 1 };
    const namesOf = (header: string) => header.split(", ").map((part) => part.split(";")[0]);
    const withModel = namesOf(
      serverTiming(
        { ...base, timings: { queueMs: 1, readMs: 1, runMs: 5, modelMs: 4, writeMs: 0 } },
        1,
        1,
        9,
        0,
      ),
    );
    const generation = namesOf(
      serverTiming({ ...base, timings: { readMs: 1, runMs: 5, writeMs: 0 } }, 1, 1, 9, 0),
    );
    const untimed = namesOf(serverTiming(base, 1, 1, 9, 0));

    const text = flat(doc("docs/protocol.md"));
    const paragraph = text.slice(text.indexOf("**`Server-Timing`**"), text.indexOf("## Asynchronous use"));
    const documented = new Set([...paragraph.matchAll(/`([a-z]+)`/g)].map((m) => m[1]));
    for (const name of [...withModel, ...generation, ...untimed]) expect(documented, name).toContain(name);
    const example = /`Server-Timing: ([^`]+)`/.exec(paragraph)?.[1];
    expect(example && namesOf(example)).toEqual(withModel);
  });

  it("README.md names every scheduler a request may give", () => {
    const text = flat(doc("README.md"));
    const paragraph = text.slice(text.indexOf("`scheduler` ("), text.indexOf("`seed` ("));
    for (const name of SchedulerName.options) expect(paragraph, name).toContain(`\`${name}\``);
  });

  it("docs/configuration.md has a row for every setting of the API", () => {
    const text = doc("docs/configuration.md");
    for (const name of Object.keys(Env.shape))
      expect(text, name).toMatch(new RegExp(`^\\| \`${name}\` `, "m"));
  });
});
