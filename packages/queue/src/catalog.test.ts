import { describe, expect, it } from "vitest";
import { jobCatalog } from "./catalog.ts";

describe("jobCatalog concurrency", () => {
  it("gives decode and encode queues their prefetched jobs on top of a batch per slot; generations none", () => {
    const capacity = { concurrency: 2, maxBatchSize: 4, prefetch: 1 };
    expect(jobCatalog.entries.decode.concurrency(capacity)).toBe(9);
    expect(jobCatalog.entries.encode.concurrency(capacity)).toBe(9);
    expect(jobCatalog.entries.generate.concurrency(capacity)).toBe(2);
    // No prefetch given: exactly what can run at once.
    expect(jobCatalog.entries.decode.concurrency({ concurrency: 1, maxBatchSize: 1 })).toBe(1);
  });
});
