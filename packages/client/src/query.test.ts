import { describe, expect, it } from "vitest";
import { pythonQuery } from "./query.ts";

describe("pythonQuery", () => {
  it("encodes like Python requests: repeated list keys, True/False, None left out, insertion order", () => {
    expect(
      pythonQuery({
        image_format: "jpg",
        flag: true,
        off: false,
        shape: [1, 4, 64, 64],
        none: undefined,
        nil: null,
        scaling_factor: 0.18215,
        text: "a b&c=d/é",
      }),
    ).toBe(
      "image_format=jpg&flag=True&off=False&shape=1&shape=4&shape=64&shape=64&scaling_factor=0.18215&text=a+b%26c%3Dd%2F%C3%A9",
    );
    expect(pythonQuery({})).toBe("");
    expect(pythonQuery({ empty: [] })).toBe("");
  });
});
