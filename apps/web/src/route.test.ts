import { describe, expect, it } from "vitest";
import { parseRoute, routeHash, TABS } from "./route.ts";

describe("routes", () => {
  it("reads each tab, and a job on the jobs tab", () => {
    for (const { id } of TABS) expect(parseRoute(`#/${id}`)).toEqual({ tab: id });
    expect(parseRoute("#/jobs/6f0c-1")).toEqual({ tab: "jobs", jobId: "6f0c-1" });
    expect(parseRoute("#jobs/a%2Fb")).toEqual({ tab: "jobs", jobId: "a/b" });
  });

  it("falls back to the first tab for an empty or unknown hash", () => {
    for (const hash of ["", "#", "#/", "#/nope", "#/vae-x/1", "#/%E0%A4%A"])
      expect(parseRoute(hash)).toEqual({ tab: "text-to-image" });
    expect(parseRoute("#/vae/extra")).toEqual({ tab: "vae" });
    expect(parseRoute("#/jobs/%E0%A4%A")).toEqual({ tab: "jobs", jobId: "%E0%A4%A" });
  });

  it("writes hashes that read back as the same route", () => {
    for (const route of [{ tab: "vae" as const }, { tab: "jobs" as const, jobId: "id with/slash?" }])
      expect(parseRoute(routeHash(route))).toEqual(route);
  });
});
