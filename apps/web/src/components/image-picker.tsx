import { useEffect, useState } from "preact/hooks";
import { formatBytes } from "../format.ts";
import { type PickedImage, pickImage } from "../image.ts";

interface Props {
  id: string;
  label: string;
  value: PickedImage | null;
  onChange: (image: PickedImage) => void;
}

/** Pick an image with the file dialog (a labelled input, so the keyboard reaches it) or drop one on the box. */
export function ImagePicker({ id, label, value, onChange }: Props) {
  const [over, setOver] = useState(false);
  const take = async (file: File | undefined) => {
    if (file) onChange(await pickImage(file));
  };
  return (
    <fieldset
      class={`drop${over ? " over" : ""}`}
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        void take(e.dataTransfer?.files[0]);
      }}
    >
      <legend>{label}</legend>
      <label for={id}>Choose a file</label>
      <input
        id={id}
        type="file"
        accept="image/png,image/jpeg,image/webp"
        onChange={(e) => void take(e.currentTarget.files?.[0])}
      />
      <p class="hint">…or drop a PNG, JPEG or WebP here.</p>
      {value && (
        <figure class="thumb">
          <img src={value.url} alt={`Chosen image: ${value.name}`} />
          <figcaption>
            {value.name}
            {value.width !== null && ` · ${value.width} × ${value.height}`} ·{" "}
            {formatBytes(value.bytes.length)}
          </figcaption>
        </figure>
      )}
    </fieldset>
  );
}

/** The picked image of a form; the previous one's object URL is revoked when it is replaced. */
export function usePickedImage(): [PickedImage | null, (image: PickedImage) => void] {
  const [image, setImage] = useState<PickedImage | null>(null);
  useEffect(
    () => () => {
      if (image) URL.revokeObjectURL(image.url);
    },
    [image],
  );
  return [image, setImage];
}
