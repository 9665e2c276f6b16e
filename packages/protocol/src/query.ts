import { z } from "zod";
import { AppError, type ErrorCode } from "./errors.ts";

// Python `requests` sends booleans as `True`/`False`; other clients send lowercase or 1/0.
const TRUE = new Set(["true", "1", "yes"]);
const FALSE = new Set(["false", "0", "no"]);

/** A query-string boolean: `True`/`False`, `true`/`false`, `1`/`0`. */
export const QueryBool = z.union([z.string(), z.boolean()]).transform((v, ctx) => {
  if (typeof v === "boolean") return v;
  const s = v.trim().toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  ctx.addIssue({ code: "custom", message: `expected True or False, got "${v}"` });
  return z.NEVER;
});

/** A repeated query key arrives as an array: the last value wins. */
export const lastValue = (v: unknown) => (Array.isArray(v) ? v[v.length - 1] : v);

/** A finite number given as a query string. Repeated keys: the last one wins. */
export const QueryNumber = z.preprocess(
  lastValue,
  z.string().trim().min(1).pipe(z.coerce.number<string>().refine(Number.isFinite, "must be a finite number")),
);
/** A positive integer given as a query string. */
export const QueryPositiveInt = z.preprocess(
  lastValue,
  z
    .string()
    .trim()
    .regex(/^\d+$/, "must be a positive integer")
    .pipe(z.coerce.number<string>().int().positive().max(1_000_000)),
);

/**
 * `shape` as diffusers sends it: the key repeated once per dimension (`shape=1&shape=4&...`).
 * Also accepted: one value holding a JSON list or a comma-separated list (`shape=[1,4,64,64]`).
 */
export const QueryShape = z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
  let parts: string[] = Array.isArray(v) ? v : [v];
  if (parts.length === 1) parts = parts[0]!.replace(/^\s*[[(]|[\])]\s*$/g, "").split(",");
  const dims = parts.map((p) => p.trim());
  for (const d of dims) {
    if (!/^-?\d+$/.test(d)) {
      ctx.addIssue({ code: "custom", message: `shape dimension "${d}" is not an integer` });
      return z.NEVER;
    }
  }
  const shape = dims.map(Number);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d <= 0) {
      ctx.addIssue({
        code: "custom",
        message: `shape ${JSON.stringify(shape)} has a dimension that is not a positive integer`,
      });
      return z.NEVER;
    }
  }
  return shape;
});

const codeForField: Record<string, ErrorCode> = {
  shape: "invalid_shape",
  dtype: "invalid_dtype",
  height: "invalid_parameter",
  width: "invalid_parameter",
};

/**
 * Parses with a zod schema and turns the first issue into an AppError whose code names the
 * field's kind (`invalid_shape`, `invalid_dtype`, else `fallback`).
 */
export function parseOrThrow<T extends z.ZodType>(
  schema: T,
  value: unknown,
  fallback: ErrorCode = "invalid_parameter",
): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = String(issue.path[0] ?? "");
  const code = codeForField[field] ?? fallback;
  const where = issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
  throw new AppError(code, `Invalid ${field || "request"}: ${where}${issue.message}.`, {
    details: result.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
  });
}

/**
 * Longest query value, in characters (a repeated key: its values joined by commas). Every value
 * the protocol reads is a few characters; the cap bounds what an unknown key may carry too.
 */
export const MAX_QUERY_VALUE_CHARS = 1024;

/** Refuses a query with a value over {@link MAX_QUERY_VALUE_CHARS}, before anything parses it. */
export function checkQuerySizes(query: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(query)) {
    const values = Array.isArray(value) ? value : [value];
    let chars = Math.max(0, values.length - 1);
    for (const v of values) chars += typeof v === "string" ? v.length : 0;
    if (chars > MAX_QUERY_VALUE_CHARS)
      throw new AppError(
        "invalid_parameter",
        `Invalid ${key.slice(0, 64)}: the query value is ${chars} characters, over the limit of ${MAX_QUERY_VALUE_CHARS}.`,
        { details: { parameter: key.slice(0, 64), limit: MAX_QUERY_VALUE_CHARS } },
      );
  }
}

/** A decode without `shape`: what it is and the two ways to send it (PROTOCOL.md §1). */
export const missingShape = (): AppError =>
  new AppError(
    "invalid_shape",
    "Missing shape: the latents' shape is required, in the query string, one key per dimension " +
      "(shape=1&shape=4&shape=64&shape=64, as diffusers sends it) or one list (shape=1,4,64,64).",
    { details: { parameter: "shape" } },
  );
