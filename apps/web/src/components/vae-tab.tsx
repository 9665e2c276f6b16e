import type { HybridClient, ModelEntry } from "@hybrid/client";
import { useEffect, useMemo, useState } from "preact/hooks";
import { describeError, isUnauthorized, type ShownError } from "../errors.ts";
import { formatMs, formatShape } from "../format.ts";
import { blobUrl, fitSize, resizedPng } from "../image.ts";
import { roundTripModels } from "../params.ts";
import { ErrorNote } from "./error-note.tsx";
import { ImagePicker, usePickedImage } from "./image-picker.tsx";

interface Props {
  client: HybridClient;
  models: readonly ModelEntry[];
  onUnauthorized: (e: unknown) => void;
}

/** Longest side sent to the encoder: a quick check, not a resize service. */
const MAX_SIDE = 512;

interface RoundTrip {
  model: string;
  /** What was encoded (the picked image, or its redrawn copy). */
  inputUrl: string;
  inputSize: string;
  shape: number[];
  dtype: string;
  encodeMs: number;
  decodedUrl: string;
  decodeMs: number;
}

/** Encodes an image with a VAE and decodes the latents back, to show both side by side. */
export function VaeTab({ client, models, onUnauthorized }: Props) {
  const choices = useMemo(() => roundTripModels(models), [models]);
  const [model, setModel] = useState(choices[0]?.id ?? "");
  const [image, setImage] = usePickedImage();
  const [busy, setBusy] = useState<"encoding" | "decoding" | null>(null);
  const [error, setError] = useState<ShownError | null>(null);
  const [trip, setTrip] = useState<RoundTrip | null>(null);

  useEffect(() => {
    if (!choices.some((m) => m.id === model)) setModel(choices[0]?.id ?? "");
  }, [choices, model]);
  useEffect(
    () => () => {
      if (trip) {
        URL.revokeObjectURL(trip.inputUrl);
        URL.revokeObjectURL(trip.decodedUrl);
      }
    },
    [trip],
  );

  const roundTrip = async (e: Event) => {
    e.preventDefault();
    setError(null);
    if (!image) {
      setError({ message: "Choose or drop an image first." });
      return;
    }
    const info = choices.find((m) => m.id === model);
    try {
      setBusy("encoding");
      // Each side a multiple of the VAE's compression, within MAX_SIDE; the same image otherwise.
      let bytes = image.bytes;
      let type = image.type;
      let size = image.width === null ? "?" : `${image.width} × ${image.height}`;
      if (image.width !== null && image.height !== null) {
        const fit = fitSize(image.width, image.height, MAX_SIDE, info?.spatial_compression ?? 8);
        if (fit.width !== image.width || fit.height !== image.height) {
          bytes = await resizedPng(image, fit.width, fit.height);
          type = "image/png";
          size = `${fit.width} × ${fit.height} (redrawn from ${image.width} × ${image.height})`;
        }
      }
      let t = performance.now();
      // Raw latents both ways (no scaling sent): what comes back is the VAE's own reconstruction.
      const latents = await client.remoteEncode(model, bytes);
      const encodeMs = performance.now() - t;
      setBusy("decoding");
      t = performance.now();
      const decoded = await client.remoteDecode(model, {
        tensor: { data: latents.data, shape: latents.shape, dtype: "float32" },
        outputType: "pil",
        imageFormat: "png",
        doScaling: false,
      });
      const decodeMs = performance.now() - t;
      if (decoded.kind !== "image") throw new Error(`The decoder answered a ${decoded.kind}, not an image.`);
      setTrip({
        model,
        inputUrl: blobUrl(bytes, type),
        inputSize: size,
        shape: latents.shape,
        dtype: latents.dtype,
        encodeMs,
        decodedUrl: blobUrl(decoded.bytes, decoded.contentType),
        decodeMs,
      });
    } catch (err) {
      if (isUnauthorized(err)) onUnauthorized(err);
      setError(describeError(err));
    } finally {
      setBusy(null);
    }
  };

  if (choices.length === 0)
    return <p class="card empty">No model with both a VAE encoder and decoder is served right now.</p>;

  return (
    <div class="split">
      <form class="card controls" onSubmit={roundTrip} aria-label="VAE round trip">
        <div class="field">
          <label for="vae-model">VAE model</label>
          <select id="vae-model" value={model} onChange={(e) => setModel(e.currentTarget.value)}>
            {choices.map((m) => (
              <option key={m.id} value={m.id}>
                {m.id} ({m.family}, {m.latent_channels} channels)
              </option>
            ))}
          </select>
        </div>
        <ImagePicker id="vae-image" label="Image to encode" value={image} onChange={setImage} />
        <p class="hint">
          Encodes the image to latents (<code>POST /v1/vae/{"{model}"}/encode</code>), then decodes them back
          (<code>/decode</code>). Images larger than {MAX_SIDE} px are redrawn smaller first.
        </p>
        <ErrorNote error={error} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy !== null}>
            Encode and decode
          </button>
        </div>
      </form>
      <section class="run" aria-labelledby="vae-result-title">
        <h2 id="vae-result-title" class="visually-hidden">
          Round trip
        </h2>
        <p class="status" role="status">
          {busy === "encoding" ? "Encoding…" : busy === "decoding" ? "Decoding…" : trip ? "Done." : "Ready."}
        </p>
        {trip ? (
          <>
            <div class="pair">
              <figure>
                <img src={trip.inputUrl} alt="Original, as sent to the encoder" />
                <figcaption>Original · {trip.inputSize}</figcaption>
              </figure>
              <figure>
                <img
                  src={trip.decodedUrl}
                  alt="Reconstruction, decoded from the latents"
                  data-testid="vae-decoded"
                />
                <figcaption>Decoded by {trip.model}</figcaption>
              </figure>
            </div>
            <dl class="facts">
              <div>
                <dt>Latents</dt>
                <dd data-testid="latent-shape">{formatShape(trip.shape)}</dd>
              </div>
              <div>
                <dt>dtype</dt>
                <dd>{trip.dtype}</dd>
              </div>
              <div>
                <dt>Encode</dt>
                <dd>{formatMs(trip.encodeMs)}</dd>
              </div>
              <div>
                <dt>Decode</dt>
                <dd>{formatMs(trip.decodeMs)}</dd>
              </div>
            </dl>
          </>
        ) : (
          <div class="canvas">
            <p class="placeholder">The original and its reconstruction appear here.</p>
          </div>
        )}
      </section>
    </div>
  );
}
