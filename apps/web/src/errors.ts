import { isHybridError } from "@hybrid/client";

/** An error as the page shows it: the API's sentence, and its status and code when it had some. */
export interface ShownError {
  message: string;
  status?: number;
  code?: string;
}

/**
 * What to tell the user about a failed call: a {@link HybridError}'s own message (the service's
 * sentence), an abort as such, a network failure as the API not answering.
 */
export function describeError(e: unknown): ShownError {
  if (isHybridError(e)) return { message: e.message, status: e.status, code: e.code };
  if (e instanceof DOMException && (e.name === "AbortError" || e.name === "TimeoutError"))
    return { message: "Stopped before the API answered." };
  if (e instanceof TypeError) return { message: `The API did not answer (${e.message}).` };
  if (e instanceof Error) return { message: e.message || e.name };
  return { message: String(e) };
}

/** The error of a failed or canceled job (`job.error`), shown like an API error. */
export const jobError = (error: { code: string; message: string } | null): ShownError | null =>
  error ? { message: error.message, code: error.code } : null;

/** True for an answer that means "this key is not (or no longer) good": ask for one again. */
export const isUnauthorized = (e: unknown): boolean => isHybridError(e) && e.status === 401;
