import type { HybridClient, ModelEntry } from "@hybrid/client";
import { useEffect, useMemo, useState } from "preact/hooks";
import type { ShownError } from "../errors.ts";
import {
  formFor,
  type GenerationForm,
  type GenerationTask,
  imageToImageParams,
  initialModel,
  modelsFor,
  randomSeed,
  SCHEDULERS,
  textToImageParams,
} from "../params.ts";
import { isActive } from "../run-state.ts";
import { ErrorNote } from "./error-note.tsx";
import { ImagePicker, usePickedImage } from "./image-picker.tsx";
import { RunView } from "./run-view.tsx";
import { useGeneration } from "./use-generation.ts";

/** A die showing five: drawn here, so it needs no emoji font. */
function DiceIcon() {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">
      <rect x="3" y="3" width="18" height="18" rx="4" fill="none" stroke="currentColor" stroke-width="2" />
      {[
        [8, 8],
        [16, 8],
        [12, 12],
        [8, 16],
        [16, 16],
      ].map(([cx, cy]) => (
        <circle key={`${cx}-${cy}`} cx={cx} cy={cy} r="1.6" fill="currentColor" />
      ))}
    </svg>
  );
}

interface Props {
  task: GenerationTask;
  client: HybridClient;
  models: readonly ModelEntry[];
  onUnauthorized: (e: unknown) => void;
}

type TextField = Exclude<keyof GenerationForm, "previews" | "format">;

/** Text-to-image or image-to-image: the form on one side, the run and its image on the other. */
export function GenerateTab({ task, client, models, onUnauthorized }: Props) {
  const choices = useMemo(() => modelsFor(models, task), [models, task]);
  const [form, setForm] = useState<GenerationForm>(() => formFor(initialModel(choices)));
  const [image, setImage] = usePickedImage();
  const [missing, setMissing] = useState<ShownError | null>(null);
  const run = useGeneration(client, onUnauthorized);
  const id = (field: string) => `${task}-${field}`;

  // Models come and go with their workers: keep the chosen one while it is served.
  useEffect(() => {
    if (!choices.some((m) => m.id === form.model)) setForm((f) => formFor(initialModel(choices), f));
  }, [choices, form.model]);

  const set = (field: TextField) => (e: Event) => {
    const value = (e.currentTarget as HTMLInputElement).value;
    setForm((f) => ({ ...f, [field]: value }));
  };
  const pickModel = (modelId: string) =>
    setForm((f) =>
      formFor(
        choices.find((m) => m.id === modelId),
        f,
      ),
    );

  const submit = (e: Event) => {
    e.preventDefault();
    setMissing(null);
    if (task === "image-to-image") {
      if (!image) {
        setMissing({ message: "Choose or drop an image first." });
        return;
      }
      void run.start((signal) =>
        client.jobs.submitImageToImage(form.model, imageToImageParams(form, image.bytes), { signal }),
      );
    } else {
      void run.start((signal) =>
        client.jobs.submitTextToImage(form.model, textToImageParams(form), { signal }),
      );
    }
  };

  if (choices.length === 0)
    return (
      <p class="card empty">
        No model serves {task} right now: start a worker with a pipeline model (the defaults of{" "}
        <code>pnpm start</code> include <code>sd-tiny</code>).
      </p>
    );

  const busy = isActive(run.state);
  // Flux and SD3 take sizes in whole 16-pixel patches (the model says so); 8 otherwise.
  const sizeStep = choices.find((m) => m.id === form.model)?.generation?.size_multiple ?? 8;
  return (
    <div class="split">
      <form
        class="card controls"
        onSubmit={submit}
        noValidate
        aria-label={task === "text-to-image" ? "Text to image" : "Image to image"}
      >
        <div class="field">
          <label for={id("model")}>Model</label>
          <select id={id("model")} value={form.model} onChange={(e) => pickModel(e.currentTarget.value)}>
            {choices.map((m) => (
              <option key={m.id} value={m.id}>
                {m.id} ({m.family})
              </option>
            ))}
          </select>
        </div>
        {task === "image-to-image" && (
          <ImagePicker id={id("image")} label="Init image" value={image} onChange={setImage} />
        )}
        <div class="field">
          <label for={id("prompt")}>Prompt</label>
          <textarea
            id={id("prompt")}
            rows={3}
            value={form.prompt}
            onInput={set("prompt")}
            placeholder="a lighthouse at dusk"
          />
        </div>
        <div class="field">
          <label for={id("negative")}>Negative prompt</label>
          <textarea
            id={id("negative")}
            rows={2}
            value={form.negativePrompt}
            onInput={set("negativePrompt")}
            placeholder="blurry"
          />
        </div>
        <div class="row">
          <NumberField
            id={id("width")}
            label="Width"
            value={form.width}
            onInput={set("width")}
            min={64}
            step={sizeStep}
          />
          <NumberField
            id={id("height")}
            label="Height"
            value={form.height}
            onInput={set("height")}
            min={64}
            step={sizeStep}
          />
        </div>
        <div class="row">
          <NumberField id={id("steps")} label="Steps" value={form.steps} onInput={set("steps")} min={1} />
          <NumberField
            id={id("guidance")}
            label="Guidance"
            value={form.guidance}
            onInput={set("guidance")}
            min={0}
            step={0.5}
            decimal
          />
        </div>
        {task === "image-to-image" && (
          <div class="field">
            <label for={id("strength")}>Strength: {form.strength || "model default"}</label>
            <input
              id={id("strength")}
              type="range"
              min={0}
              max={1}
              step={0.05}
              value={form.strength || "0.8"}
              onInput={set("strength")}
            />
          </div>
        )}
        <div class="row">
          <div class="field">
            <label for={id("scheduler")}>Scheduler</label>
            <select id={id("scheduler")} value={form.scheduler} onChange={set("scheduler")}>
              <option value="">model's own</option>
              {SCHEDULERS.map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for={id("seed")}>Seed</label>
            <div class="with-button">
              <input
                id={id("seed")}
                type="number"
                inputMode="numeric"
                min={0}
                placeholder="random"
                value={form.seed}
                onInput={set("seed")}
              />
              <button
                type="button"
                class="icon"
                aria-label="Random seed"
                title="Random seed"
                onClick={() => setForm((f) => ({ ...f, seed: String(randomSeed()) }))}
              >
                <DiceIcon />
              </button>
            </div>
          </div>
        </div>
        <div class="row">
          <div class="field">
            <label for={id("format")}>Format</label>
            <select
              id={id("format")}
              value={form.format}
              onChange={(e) => {
                const format = e.currentTarget.value === "jpeg" ? "jpeg" : "png";
                setForm((f) => ({ ...f, format }));
              }}
            >
              <option value="png">PNG</option>
              <option value="jpeg">JPEG</option>
            </select>
          </div>
          <div class="field check">
            <input
              id={id("previews")}
              type="checkbox"
              checked={form.previews}
              onChange={(e) => {
                const previews = e.currentTarget.checked;
                setForm((f) => ({ ...f, previews }));
              }}
            />
            <label for={id("previews")}>Show previews</label>
          </div>
        </div>
        <ErrorNote error={missing} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            Generate
          </button>
        </div>
      </form>
      <RunView
        run={run}
        idPrefix={task}
        onUseSeed={(seed) => setForm((f) => ({ ...f, seed: String(seed) }))}
      />
    </div>
  );
}

/** A labelled number input (numeric keyboard on phones; `decimal` for fractional values). */
function NumberField(props: {
  id: string;
  label: string;
  value: string;
  onInput: (e: Event) => void;
  min: number;
  step?: number;
  decimal?: boolean;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        type="number"
        inputMode={props.decimal ? "decimal" : "numeric"}
        min={props.min}
        step={props.step}
        value={props.value}
        onInput={props.onInput}
      />
    </div>
  );
}
