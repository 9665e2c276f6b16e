/** A picked image file: its bytes as sent, a URL to show it, and its size when the browser could read it. */
export interface PickedImage {
  name: string;
  bytes: Uint8Array;
  type: string;
  url: string;
  width: number | null;
  height: number | null;
}

/** An object URL of bytes (revoke it when done). */
export const blobUrl = (bytes: Uint8Array, type: string): string =>
  URL.createObjectURL(new Blob([new Uint8Array(bytes)], { type }));

/**
 * A size for a VAE round trip: within `maxSide`, keeping the aspect ratio, each side a multiple
 * of `multiple` (the VAE's spatial compression) and at least one multiple.
 */
export function fitSize(
  width: number,
  height: number,
  maxSide: number,
  multiple = 8,
): { width: number; height: number } {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  const round = (n: number) => Math.max(multiple, Math.floor((n * scale) / multiple) * multiple);
  return { width: round(width), height: round(height) };
}

/** Reads a dropped or chosen file; its size comes from the browser's decoder (null if it cannot). */
export async function pickImage(file: File): Promise<PickedImage> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let width: number | null = null;
  let height: number | null = null;
  try {
    const bitmap = await createImageBitmap(file);
    width = bitmap.width;
    height = bitmap.height;
    bitmap.close();
  } catch {
    // Not an image the browser decodes: the API will say what is wrong with it.
  }
  return {
    name: file.name,
    bytes,
    type: file.type || "application/octet-stream",
    url: blobUrl(bytes, file.type),
    width,
    height,
  };
}

/** The image redrawn at `width` × `height` as PNG bytes (in the browser, on a canvas). */
export async function resizedPng(image: PickedImage, width: number, height: number): Promise<Uint8Array> {
  const bitmap = await createImageBitmap(new Blob([new Uint8Array(image.bytes)], { type: image.type }), {
    resizeWidth: width,
    resizeHeight: height,
    resizeQuality: "high",
  });
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d")!.drawImage(bitmap, 0, 0);
  bitmap.close();
  const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!blob) throw new Error("The browser could not redraw the image.");
  return new Uint8Array(await blob.arrayBuffer());
}

/** The MIME type of a base64 image (a JSON answer's `image`), from its first bytes. */
export function base64ImageType(b64: string): string {
  if (b64.startsWith("iVBOR")) return "image/png";
  if (b64.startsWith("/9j/")) return "image/jpeg";
  if (b64.startsWith("UklGR")) return "image/webp";
  return "application/octet-stream";
}
