import { useState } from "preact/hooks";
import type { ShownError } from "../errors.ts";
import { ErrorNote } from "./error-note.tsx";

/** Asks for an API key once; the page keeps it in session storage and sends it as a bearer token. */
export function KeyPrompt({
  error,
  onSubmit,
}: {
  error: ShownError | null;
  onSubmit: (key: string) => void;
}) {
  const [key, setKey] = useState("");
  return (
    <form
      class="card key-prompt"
      aria-labelledby="key-title"
      onSubmit={(e) => {
        e.preventDefault();
        if (key.trim()) onSubmit(key.trim());
      }}
    >
      <h2 id="key-title">API key needed</h2>
      <p>
        This service has API keys on (<code>pnpm keys create NAME</code> makes one). The key stays in this
        tab's session storage and is sent as <code>Authorization: Bearer</code>.
      </p>
      <label for="api-key">API key</label>
      <input
        id="api-key"
        name="api-key"
        type="password"
        autocomplete="off"
        spellcheck={false}
        required
        // biome-ignore lint/a11y/noAutofocus: the key is the only thing this screen asks for.
        autoFocus
        value={key}
        onInput={(e) => setKey(e.currentTarget.value)}
      />
      <ErrorNote error={error} />
      <div class="actions">
        <button type="submit" class="primary">
          Use this key
        </button>
      </div>
    </form>
  );
}
