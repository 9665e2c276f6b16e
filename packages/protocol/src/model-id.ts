import { z } from "zod";
import { AppError } from "./errors.ts";

/** Longest model id, in characters (the Hugging Face Hub's limit on a repository id). */
export const MAX_MODEL_ID_CHARS = 96;

// A Hub repository's owner and name: what the Hub itself accepts. It refuses "--" and ".." (its
// cache folders are `models--owner--name`); here that keeps `owner--name` (modelIdFileStem) free
// of collisions between Hub-style ids, and no part can start with "." or be a path step.
const HUB_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
// A short id: what worker MODELS entries have always accepted (a leading "_" included), so every
// id served before stays valid.
const SHORT_ID = /^\w[\w.-]*$/;

/** Why `id` is not a model id, or null when it is one. */
function modelIdProblem(id: string): string | null {
  if (id.length === 0) return "the id is empty";
  if (id.length > MAX_MODEL_ID_CHARS) return `the id is longer than ${MAX_MODEL_ID_CHARS} characters`;
  const slash = id.indexOf("/");
  if (slash < 0)
    return SHORT_ID.test(id)
      ? null
      : "a short id takes letters, digits, '_', '.' and '-', starting with a letter, digit or '_'";
  const owner = id.slice(0, slash);
  const name = id.slice(slash + 1);
  if (!HUB_SEGMENT.test(owner) || !HUB_SEGMENT.test(name))
    return "a Hub-style id is owner/name, each of letters, digits, '_', '.' and '-', starting with a letter or digit";
  if (id.includes("--") || id.includes("..")) return "a Hub-style id may not contain '--' or '..'";
  return null;
}

/**
 * A model id: a short one (`sd-tiny`) or a Hugging Face Hub repository id (`owner/name`, one
 * slash), as the Hub validates them. Every id is also a safe Redis key part, BullMQ queue name
 * part (no ':'), Redis Cluster hash-tag content (no braces) and relative path (no `..` step).
 */
export const ModelId = z.string().superRefine((id, ctx) => {
  const problem = modelIdProblem(id);
  if (problem)
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(id)} is not a model id: ${problem}` });
});
export type ModelId = z.infer<typeof ModelId>;

/**
 * `id` when it is a {@link ModelId}; otherwise 400 `invalid_parameter` (`details.parameter`:
 * `model`) saying what is wrong with it. The API checks a route's model with this before it looks
 * the model up, so a malformed id is a 400 and a well-formed one nobody serves a 404.
 */
export function checkModelId(id: string): string {
  const problem = modelIdProblem(id);
  if (problem)
    throw new AppError(
      "invalid_parameter",
      `Invalid model id ${JSON.stringify(id.slice(0, 200))}: ${problem}.`,
      {
        details: { parameter: "model" },
      },
    );
  return id;
}

/** Whether `id` is a Hub-style `owner/name` id (it need not be valid). */
export const isHubModelId = (id: string): boolean => id.includes("/");

/**
 * A model id as URL path segments. A valid Hub-style id is two, its owner/name slash literal, as
 * the Hub's own URLs (`/models/owner/name`) write it; any other id is one escaped segment (a
 * short id as always; a malformed one with its slashes as `%2F`, so it still reaches the model
 * route, whose answer is a 400, and never a `.` or `..` step).
 */
export function modelIdPath(id: string): string {
  if (isHubModelId(id) && modelIdProblem(id) === null) {
    const [owner, name] = id.split("/") as [string, string];
    return `${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
  }
  return encodeURIComponent(id);
}

/**
 * A model id as one file-name part (downloads, reports): the Hub's own `owner--name`, which no
 * Hub-style id can produce otherwise since "--" is refused in them.
 */
export const modelIdFileStem = (id: string): string => id.replaceAll("/", "--");
