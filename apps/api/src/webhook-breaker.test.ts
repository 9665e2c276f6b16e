import { describe, expect, it } from "vitest";
import { HostBreaker } from "./webhook-breaker.ts";
import { OwnerSlots } from "./webhook-worker.ts";

// Both take a clock, so the tests move time instead of waiting for it.
function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("HostBreaker", () => {
  it("opens after N consecutive failures and postpones for the cool-down", () => {
    const c = clock();
    const b = new HostBreaker(3, 10_000, c.now);
    for (let i = 0; i < 2; i++) {
      expect(b.admit("h:80")).toBe(0);
      b.settle("h:80", "failure");
    }
    expect(b.isOpen("h:80")).toBe(false);
    expect(b.admit("h:80")).toBe(0);
    b.settle("h:80", "failure");
    expect(b.isOpen("h:80")).toBe(true);
    expect(b.admit("h:80")).toBe(10_000);
    c.advance(4000);
    expect(b.admit("h:80")).toBe(6000);
    // Other hosts are not affected.
    expect(b.admit("other:443")).toBe(0);
  });

  it("a success resets the count", () => {
    const b = new HostBreaker(2, 10_000, clock().now);
    b.settle("h", "failure");
    b.settle("h", "success");
    b.settle("h", "failure");
    expect(b.isOpen("h")).toBe(false);
  });

  it("half-open: one probe at a time; its success closes, its failure re-opens", () => {
    const c = clock();
    const b = new HostBreaker(1, 1000, c.now);
    b.settle("h", "failure");
    c.advance(1000);
    expect(b.admit("h")).toBe(0); // the probe
    expect(b.admit("h")).toBeGreaterThan(0); // others wait while it runs
    b.settle("h", "failure");
    expect(b.admit("h")).toBe(1000);
    c.advance(1000);
    expect(b.admit("h")).toBe(0);
    b.settle("h", "success");
    expect(b.isOpen("h")).toBe(false);
    expect(b.admit("h")).toBe(0);
    expect(b.admit("h")).toBe(0);
  });

  it("a neutral end (a refusal, a 4xx) frees the probe without changing the count", () => {
    const c = clock();
    const b = new HostBreaker(1, 1000, c.now);
    b.settle("h", "failure");
    c.advance(1000);
    expect(b.admit("h")).toBe(0);
    b.settle("h", "neutral");
    expect(b.isOpen("h")).toBe(true);
    expect(b.admit("h")).toBe(0);
  });
});

describe("OwnerSlots", () => {
  it("gives each owner at most `limit` slots, others unaffected", () => {
    const s = new OwnerSlots(2, 10_000, clock().now);
    const a1 = s.take("a");
    const a2 = s.take("a");
    expect(a1).not.toBeNull();
    expect(a2).not.toBeNull();
    expect(s.take("a")).toBeNull();
    expect(s.take("b")).not.toBeNull();
    a1?.();
    expect(s.inFlight("a")).toBe(1);
    expect(s.take("a")).not.toBeNull();
  });

  it("postpones by about how long the owner's deliveries take, within [50 ms, the timeout]", () => {
    const c = clock();
    const s = new OwnerSlots(1, 10_000, c.now);
    const fast = s.take("fast");
    c.advance(20);
    fast?.();
    const again = s.take("fast");
    expect(s.waitMs("fast")).toBe(50);
    again?.();

    s.take("hung");
    c.advance(3000);
    expect(s.waitMs("hung")).toBe(3000);
    c.advance(60_000);
    expect(s.waitMs("hung")).toBe(10_000);
  });
});
