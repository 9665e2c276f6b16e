/** The preferences of an RFC 7240 `Prefer` header this API honours. */
export interface Prefer {
  /** `respond-async`: answer 202 with the job instead of waiting for it. */
  async: boolean;
  /** `wait=N`: wait up to N seconds for the result, then answer 202 with the job. */
  waitSeconds: number | null;
}

/**
 * Parses `Prefer` (one header or several; comma-separated preferences, each `token[=value]`
 * with optional `;params`). Unknown preferences are ignored, as the RFC asks.
 */
export function parsePrefer(header: string | string[] | undefined): Prefer {
  const prefer: Prefer = { async: false, waitSeconds: null };
  const text = Array.isArray(header) ? header.join(",") : (header ?? "");
  for (const part of text.split(",")) {
    const [pref = ""] = part.split(";");
    const [rawName = "", rawValue] = pref.split("=", 2);
    const name = rawName.trim().toLowerCase();
    const value = rawValue?.trim().replace(/^"(.*)"$/, "$1");
    if (name === "respond-async") prefer.async = true;
    else if (name === "wait" && value !== undefined && /^\d+$/.test(value))
      prefer.waitSeconds = Number(value);
  }
  return prefer;
}
