// The fixtures that need vitest's own hooks (`afterAll`, `test.extend`): a subpath of their own
// (`@hybrid/testing/vitest`), so benches and stacks run outside vitest can import the rest.
import { afterAll, test } from "vitest";
import { openTestRedis, type TestRedis } from "./redis.ts";

/**
 * {@link openTestRedis} for a whole test file: call it at the top level of the file (or of a
 * `describe`); its keys are deleted and its connection closed in `afterAll`.
 */
export function useTestRedis(name: string, url?: string): TestRedis {
  const fixture = openTestRedis(name, url);
  afterAll(() => fixture.close());
  return fixture;
}

/**
 * vitest's `test` with a `testRedis` fixture: each test that names it gets its own prefix, and
 * the keys under it are deleted once the test ends, passed or failed.
 *
 * @example
 * redisTest("counts", async ({ testRedis }) => { await testRedis.redis.incr(testRedis.key("n")); });
 */
export const redisTest = test.extend<{ testRedis: TestRedis }>({
  testRedis: async ({ task }, use) => {
    const fixture = openTestRedis(task.name);
    try {
      await use(fixture);
    } finally {
      await fixture.close();
    }
  },
});
