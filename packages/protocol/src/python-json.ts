/**
 * JSON as Python's json module writes it: diffusers and transformers configs may hold bare
 * `Infinity`, `-Infinity` or `NaN` (DPM-Solver's `lambda_min_clipped`), which JSON.parse refuses.
 * Those words inside strings are left alone.
 *
 * @throws SyntaxError when the text is not JSON even with those three words allowed.
 */
export function parsePythonJson(text: string): unknown {
  const marked = text.replace(/([:[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g, '$1"\\u0000$2"');
  return JSON.parse(marked, (_k, v) =>
    typeof v === "string" && v.startsWith("\u0000") ? Number(v.slice(1)) : v,
  );
}
