import type { ModelEntry } from "@hybrid/client";
import type { PlaygroundConfig } from "@hybrid/protocol";
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import { clientFor, loadConfig, sessionStore, storedKey, storeKey } from "../api.ts";
import { describeError, isUnauthorized, type ShownError } from "../errors.ts";
import { parseRoute, type Route, TABS } from "../route.ts";
import { ErrorBoundary, ErrorNote } from "./error-note.tsx";
import { GenerateTab } from "./generate-tab.tsx";
import { JobsTab } from "./jobs-tab.tsx";
import { KeyPrompt } from "./key-prompt.tsx";
import { VaeTab } from "./vae-tab.tsx";

/** While no model is served (workers starting), the list is read again this often, in ms. */
const MODELS_RETRY_MS = 3000;

/** The page: header and tabs, the key prompt when keys are on, and each tab (kept mounted while hidden). */
export function App() {
  const [route, setRoute] = useState<Route>(() => parseRoute(location.hash));
  const [config, setConfig] = useState<PlaygroundConfig | null>(null);
  const [key, setKey] = useState<string | null>(() => storedKey(sessionStore()));
  const [askKey, setAskKey] = useState(false);
  const [keyError, setKeyError] = useState<ShownError | null>(null);
  const [models, setModels] = useState<ModelEntry[] | null>(null);
  const [modelsError, setModelsError] = useState<ShownError | null>(null);
  const client = useMemo(() => clientFor(key), [key]);

  useEffect(() => {
    const onHash = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    void loadConfig().then((c) => {
      setConfig(c);
      if (c.api_keys && !storedKey(sessionStore())) setAskKey(true);
    });
  }, []);

  /** Any 401: the key is missing, wrong or revoked. Forget it and ask again, saying why. */
  const onUnauthorized = useCallback((e: unknown) => {
    storeKey(sessionStore(), null);
    setKey(null);
    setKeyError(describeError(e));
    setAskKey(true);
  }, []);

  useEffect(() => {
    if (!config || askKey) return;
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const list = await client.models({ signal: ctl.signal });
        setModels(list);
        setModelsError(null);
        if (list.length === 0) timer = setTimeout(load, MODELS_RETRY_MS);
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (isUnauthorized(e)) return onUnauthorized(e);
        setModelsError(describeError(e));
        timer = setTimeout(load, MODELS_RETRY_MS);
      }
    };
    void load();
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [client, config, askKey, onUnauthorized]);

  const changeKey = () => {
    storeKey(sessionStore(), null);
    setKey(null);
    setKeyError(null);
    setAskKey(true);
  };

  const acceptKey = (k: string) => {
    storeKey(sessionStore(), k);
    setKey(k);
    setKeyError(null);
    setAskKey(false);
  };

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <h1>
          hybrid-inference <span class="muted">playground</span>
        </h1>
        <nav aria-label="Tabs">
          <ul>
            {TABS.map((t) => (
              <li key={t.id}>
                <a href={`#/${t.id}`} aria-current={route.tab === t.id ? "page" : undefined}>
                  {t.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <ul class="links">
          {config?.docs !== false && (
            <li>
              <a href="/docs">API docs</a>
            </li>
          )}
          {config?.dashboard && (
            <li>
              <a href="/admin/queues">Queues</a>
            </li>
          )}
          {config?.api_keys && key && (
            <li>
              <button type="button" class="link" onClick={changeKey}>
                Change key
              </button>
            </li>
          )}
        </ul>
      </header>
      <main id="main">
        {config === null ? (
          <p class="card">Loading…</p>
        ) : askKey ? (
          <KeyPrompt error={keyError} onSubmit={acceptKey} />
        ) : (
          <>
            <ErrorNote title="Could not list the models:" error={modelsError} />
            {models === null
              ? !modelsError && <p class="card">Loading models…</p>
              : TABS.map((t) => (
                  <section key={t.id} id={`tab-${t.id}`} aria-label={t.label} hidden={route.tab !== t.id}>
                    <ErrorBoundary>
                      {t.id === "text-to-image" || t.id === "image-to-image" ? (
                        <GenerateTab
                          task={t.id}
                          client={client}
                          models={models}
                          onUnauthorized={onUnauthorized}
                        />
                      ) : t.id === "vae" ? (
                        <VaeTab client={client} models={models} onUnauthorized={onUnauthorized} />
                      ) : (
                        <JobsTab
                          client={client}
                          active={route.tab === "jobs"}
                          jobId={route.jobId}
                          onUnauthorized={onUnauthorized}
                        />
                      )}
                    </ErrorBoundary>
                  </section>
                ))}
          </>
        )}
      </main>
    </>
  );
}
