import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { decodeImage, encodeImage, ImageDecodeError } from "./image.ts";

/** A smooth non-square RGB test picture with every channel different. */
function picture(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      rgb[o] = Math.round((x / (width - 1)) * 255);
      rgb[o + 1] = Math.round((y / (height - 1)) * 255);
      rgb[o + 2] = 90;
    }
  return rgb;
}

async function decodeError(bytes: Uint8Array, opts?: { maxPixels?: number }): Promise<ImageDecodeError> {
  const e = await decodeImage(bytes, opts).then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ImageDecodeError);
  return e as ImageDecodeError;
}

describe("encodeImage / decodeImage", () => {
  it("round-trips PNG losslessly, keeping width and height apart", async () => {
    const [w, h] = [37, 21];
    const rgb = picture(w, h);
    rgb[(5 * w + 30) * 3 + 2] = 255; // one odd pixel, so a transposed image would not match
    const png = await encodeImage(rgb, w, h, "png");
    expect([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join("")).toBe("PNG");
    const back = await decodeImage(png);
    expect([back.width, back.height, back.channels]).toEqual([w, h, 3]);
    expect(Buffer.from(back.data).equals(Buffer.from(rgb))).toBe(true);
  });

  it("honours PNG options and stays lossless with them", async () => {
    const rgb = picture(64, 48);
    const png = await encodeImage(rgb, 64, 48, "png", { pngCompressionLevel: 9, pngAdaptiveFiltering: true });
    const back = await decodeImage(png);
    expect(Buffer.from(back.data).equals(Buffer.from(rgb))).toBe(true);
  });

  it("encodes JPEG that decodes to the right size and nearby values", async () => {
    const [w, h] = [64, 40];
    const rgb = picture(w, h);
    const jpg = await encodeImage(rgb, w, h, "jpeg");
    expect([jpg[0], jpg[1], jpg[2]]).toEqual([0xff, 0xd8, 0xff]);
    const back = await decodeImage(jpg);
    expect([back.width, back.height]).toEqual([w, h]);
    let maxDiff = 0;
    for (let i = 0; i < rgb.length; i++) maxDiff = Math.max(maxDiff, Math.abs(back.data[i]! - rgb[i]!));
    expect(maxDiff).toBeLessThanOrEqual(12);
    // Quality 95 by default: a lower quality must make a smaller file.
    const low = await encodeImage(rgb, w, h, "jpeg", { quality: 40 });
    expect(low.length).toBeLessThan(jpg.length);
  });

  it("rejects a pixel buffer of the wrong length", async () => {
    await expect(encodeImage(new Uint8Array(10), 2, 2, "png")).rejects.toThrow(RangeError);
  });

  it("drops alpha from RGBA without compositing", async () => {
    const rgba = Buffer.from([10, 20, 30, 0, 40, 50, 60, 255, 70, 80, 90, 128, 1, 2, 3, 4]);
    const png = await sharp(rgba, { raw: { width: 2, height: 2, channels: 4 } })
      .png()
      .toBuffer();
    expect((await sharp(png).metadata()).channels).toBe(4);
    const back = await decodeImage(png);
    expect(back.channels).toBe(3);
    expect([...back.data]).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 1, 2, 3]);
  });

  it("expands greyscale (with or without alpha) to RGB", async () => {
    const grey = await sharp(Buffer.from([0, 100, 200, 255]), { raw: { width: 2, height: 2, channels: 1 } })
      .toColourspace("b-w")
      .png()
      .toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    const back = await decodeImage(grey);
    expect([...back.data]).toEqual([0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
    const greyAlpha = await sharp(Buffer.from([7, 0, 9, 255]), { raw: { width: 2, height: 1, channels: 2 } })
      .toColourspace("b-w")
      .png()
      .toBuffer();
    expect((await sharp(greyAlpha).metadata()).channels).toBe(2);
    expect([...(await decodeImage(greyAlpha)).data]).toEqual([7, 7, 7, 9, 9, 9]);
  });

  it("reduces 16-bit PNG to 8 bits", async () => {
    const png16 = await sharp(Buffer.from([10, 20, 30, 40, 50, 60]), {
      raw: { width: 2, height: 1, channels: 3 },
    })
      .toColourspace("rgb16")
      .png()
      .toBuffer();
    expect((await sharp(png16).metadata()).depth).toBe("ushort");
    const back = await decodeImage(png16);
    expect([...back.data]).toEqual([10, 20, 30, 40, 50, 60]);
  });

  it("decodes WebP", async () => {
    const webp = await sharp(Buffer.alloc(16 * 8 * 3, 77), { raw: { width: 16, height: 8, channels: 3 } })
      .webp({ lossless: true })
      .toBuffer();
    const back = await decodeImage(webp);
    expect([back.width, back.height]).toEqual([16, 8]);
    expect(back.data.every((v) => v === 77)).toBe(true);
  });
});

describe("decodeImage errors", () => {
  it("calls bytes of no known format unsupported_format", async () => {
    expect((await decodeError(Buffer.from("definitely not an image, just text"))).reason).toBe(
      "unsupported_format",
    );
    expect((await decodeError(new Uint8Array(0))).reason).toBe("unsupported_format");
    // GIF is a real image format, but not one the encode endpoint accepts.
    const gif = await sharp(Buffer.alloc(12, 0), { raw: { width: 2, height: 2, channels: 3 } })
      .gif()
      .toBuffer();
    expect((await decodeError(gif)).reason).toBe("unsupported_format");
  });

  it("calls truncated PNG, JPEG and WebP corrupt", async () => {
    const rgb = picture(64, 64);
    const png = await encodeImage(rgb, 64, 64, "png");
    const jpg = await encodeImage(rgb, 64, 64, "jpeg");
    const webp = await sharp(rgb, { raw: { width: 64, height: 64, channels: 3 } })
      .webp()
      .toBuffer();
    for (const whole of [png, jpg, webp]) {
      for (const cut of [Math.floor(whole.length / 2), 16]) {
        const e = await decodeError(whole.subarray(0, cut));
        expect(e.reason).toBe("corrupt");
        expect(e.cause).toBeInstanceOf(Error);
      }
    }
    // Just the PNG signature: recognised, but nothing to decode.
    expect((await decodeError(png.subarray(0, 8))).reason).toBe("corrupt");
  });

  it("refuses images over maxPixels as too_large, and accepts one at the limit", async () => {
    const png = await encodeImage(picture(100, 50), 100, 50, "png");
    const e = await decodeError(png, { maxPixels: 4999 });
    expect(e.reason).toBe("too_large");
    expect(e.message).toMatch(/pixel limit/);
    const ok = await decodeImage(png, { maxPixels: 5000 });
    expect([ok.width, ok.height]).toEqual([100, 50]);
  });
});
