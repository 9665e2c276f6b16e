import { QueueKeys } from "bullmq";
import { describe, expect, it } from "vitest";
import { jobCatalog } from "./catalog.ts";
import {
  bullPrefix,
  idempotencyKey,
  jobEventsKey,
  jobKey,
  knownModelsKey,
  ownerActiveKey,
  ownerJobsKey,
  payloadKey,
  resultCacheIndexKey,
  resultCacheKey,
  WEBHOOK_QUEUE,
  workerKey,
  workersKey,
} from "./names.ts";

/** What Redis Cluster hashes for a key: the text of its hash tag, or the whole key. */
function hashed(key: string): string {
  const open = key.indexOf("{");
  const close = open < 0 ? -1 : key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

const P = "hybrid";

describe("key names on a Redis Cluster", () => {
  it("keys used together share a hash tag; keys used alone have none", () => {
    const id = "6f1c2d9e-0000-4000-8000-000000000001";
    expect(hashed(jobKey(P, id))).toBe(id);
    expect(hashed(jobEventsKey(P, id))).toBe(id);
    expect(hashed(ownerJobsKey(P, "k_abc"))).toBe("k_abc");
    expect(hashed(ownerActiveKey(P, "k_abc"))).toBe("k_abc");
    const directory = [workerKey(P, "host-1-abc"), workersKey(P), knownModelsKey(P)].map(hashed);
    expect(new Set(directory)).toEqual(new Set(["directory"]));
    const cacheIndex = (["entries", "sizes", "bytes"] as const).map((p) => hashed(resultCacheIndexKey(P, p)));
    expect(new Set(cacheIndex)).toEqual(new Set(["result-cache"]));
    // Used alone: each spreads over the slots by its whole name.
    for (const key of [
      payloadKey(P, id),
      resultCacheKey(P, "k_abc", "ab12"),
      idempotencyKey(P, "k_abc", "ff00"),
    ])
      expect(hashed(key)).toBe(key);
  });

  it("keeps every key under the deployment's prefix", () => {
    for (const key of [
      jobKey(P, "x"),
      jobEventsKey(P, "x"),
      ownerJobsKey(P, "o"),
      ownerActiveKey(P, "o"),
      workerKey(P, "w"),
      workersKey(P),
      knownModelsKey(P),
      payloadKey(P, "x"),
      `${bullPrefix(P, WEBHOOK_QUEUE)}:${WEBHOOK_QUEUE}:wait`,
    ])
      expect(key.startsWith(`${P}:`), key).toBe(true);
  });

  it("puts all of one BullMQ queue's keys in one slot, and each queue in its own", () => {
    const names = [
      jobCatalog.queue("decode", "sd-v1-tiny"),
      jobCatalog.queue("generate", "sd-tiny"),
      WEBHOOK_QUEUE,
    ];
    const tags = names.map((name) => {
      // BullMQ's own key names for a queue opened with this prefix (what Queue.keys holds).
      const qk = new QueueKeys(bullPrefix(P, name));
      const keys = [...Object.values(qk.getKeys(name)), qk.toKey(name, "some-job-id")];
      expect(new Set(keys.map(hashed)), name).toEqual(new Set([name]));
      // The queue's name, as users, metrics and the catalog see it, has no braces.
      expect(name).not.toMatch(/[{}]/);
      return hashed(keys[0]!);
    });
    expect(new Set(tags).size).toBe(names.length);
  });
});
