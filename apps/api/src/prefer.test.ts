import { describe, expect, it } from "vitest";
import { parsePrefer } from "./prefer.ts";

describe("parsePrefer", () => {
  it.each([
    [undefined, { async: false, waitSeconds: null }],
    ["respond-async", { async: true, waitSeconds: null }],
    ["Respond-Async", { async: true, waitSeconds: null }],
    ["wait=5", { async: false, waitSeconds: 5 }],
    ["respond-async, wait=10", { async: true, waitSeconds: 10 }],
    ['respond-async; foo=bar, wait="3"', { async: true, waitSeconds: 3 }],
    [["return=minimal", "wait=0"], { async: false, waitSeconds: 0 }],
    ["wait=-1, wait=abc, handling=lenient", { async: false, waitSeconds: null }],
  ])("%j → %j", (header, expected) => {
    expect(parsePrefer(header)).toEqual(expected);
  });
});
