// The small sync decode the load, soak and chaos benches send: a 1x4x32x32 float32 latent for
// the tiny generated SD VAE, answered as uint8 [1,256,256,3] (`output_type=pt&partial_postprocess=True`),
// so the queue and the processes around the model dominate.
import { encodeFromFloat32 } from "@hybrid/protocol";
import type { Pool } from "undici";
import { pythonQuery } from "../e2e/diffusers-client.ts";

export const SMALL_DECODE_MODEL = "sd-v1-tiny";
export const SMALL_DECODE_BODY = encodeFromFloat32(
  Float32Array.from({ length: 4 * 32 * 32 }, (_, i) => Math.sin(i * 0.37) * 2),
  "float32",
);
export const SMALL_DECODE_PATH = `/v1/vae/${SMALL_DECODE_MODEL}/decode?${pythonQuery({
  output_type: "pt",
  partial_postprocess: true,
  shape: [1, 4, 32, 32],
  dtype: "float32",
})}`;
export const SMALL_DECODE_ANSWER_BYTES = 256 * 256 * 3;

/** Sends one small decode over `pool`: null when the answer is right, else why not (for a report). */
export async function sendSmallDecode(pool: Pool): Promise<string | null> {
  try {
    const res = await pool.request({
      path: SMALL_DECODE_PATH,
      method: "POST",
      headers: { "content-type": "tensor/binary", accept: "tensor/binary" },
      body: SMALL_DECODE_BODY,
    });
    const bytes = (await res.body.arrayBuffer()).byteLength;
    if (res.statusCode !== 200) return String(res.statusCode);
    if (bytes !== SMALL_DECODE_ANSWER_BYTES) return `200 with ${bytes} bytes`;
    return null;
  } catch (e) {
    return (e as Error).name;
  }
}
