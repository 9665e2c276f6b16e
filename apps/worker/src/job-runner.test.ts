import { Worker } from "node:worker_threads";
import { AppError } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { sizeFailure } from "./job-runner.ts";

/** The error `fn` really throws. */
const thrown = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
};

describe("sizeFailure", () => {
  it("turns the runtime's refusals to allocate into a 413 (which the runner never retries)", () => {
    const huge = 2 ** 40;
    for (const e of [
      thrown(() => new Float32Array(huge)),
      thrown(() => new ArrayBuffer(huge)),
      thrown(() => Buffer.alloc(huge)),
      thrown(() => "x".repeat(2 ** 30)),
      new Error(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 1",
      ),
      new Error("a batch failed", { cause: thrown(() => new Float32Array(huge)) }),
    ]) {
      const size = sizeFailure(e);
      expect(size, String(e)).toBeInstanceOf(AppError);
      expect(size?.code).toBe("too_large");
      expect(size?.status).toBeLessThan(500);
      expect(size?.cause).toBe(e);
    }
  });

  it("keeps an allocation failure recognisable after it crossed from a session thread", async () => {
    // Session threads' errors reach the runner structured-cloned, as piscina passes them on.
    const e = await new Promise<unknown>((resolve) => {
      const w = new Worker(
        "try { new ArrayBuffer(2 ** 40) } catch (e) { require('node:worker_threads').parentPort.postMessage(e) }",
        {
          eval: true,
        },
      );
      w.once("message", (m) => {
        resolve(m);
        void w.terminate();
      });
    });
    expect(sizeFailure(e)?.code).toBe("too_large");
  });

  it("leaves other failures alone (they are retried)", () => {
    for (const e of [
      new Error("ECONNRESET"),
      new RangeError("Maximum call stack size exceeded"),
      thrown(() => Buffer.alloc(1).readUInt32LE(8)),
      "a string",
      null,
    ])
      expect(sizeFailure(e), String(e)).toBeNull();
  });
});
