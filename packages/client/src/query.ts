/** A query value as the client sends it; `undefined` and `null` leave the key out. */
export type QueryValue =
  | string
  | number
  | boolean
  | readonly (string | number | boolean)[]
  | undefined
  | null;

/**
 * A query string encoded the way Python `requests` encodes `params=`, which is what diffusers'
 * `remote_decode`/`remote_encode` send: keys in insertion order, a list repeats its key once per
 * item (`shape=1&shape=4&...`), booleans are `True`/`False`, `None` is left out.
 */
export function pythonQuery(params: Readonly<Record<string, QueryValue>>): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    const items: readonly (string | number | boolean)[] = Array.isArray(value) ? value : [value];
    for (const item of items)
      q.append(key, typeof item === "boolean" ? (item ? "True" : "False") : String(item));
  }
  return q.toString();
}
