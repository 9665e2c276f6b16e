import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { toBase64 } from "./base64.ts";
import { verifyWebhook, WebhookVerificationError } from "./webhooks.ts";

const SECRET = `whsec_${toBase64(new Uint8Array(32).map((_, i) => (i * 37 + 11) & 0xff))}`;
const BODY = JSON.stringify({ id: "6f0c2a8e", kind: "generate", status: "succeeded", warnings: ["é ✓"] });
const ID = "msg_6f0c2a8e_1718185267170-0";

/** Headers of a delivery signed by the reference implementation, `seconds` ago. */
function signed(body = BODY, secondsAgo = 0, secret = SECRET) {
  const at = new Date((Math.floor(Date.now() / 1000) - secondsAgo) * 1000);
  return {
    "webhook-id": ID,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": new Webhook(secret).sign(ID, at, body),
  };
}

describe("verifyWebhook", () => {
  it("accepts what standardwebhooks signs, as text or bytes, with any header container", async () => {
    const headers = signed();
    expect(await verifyWebhook(SECRET, BODY, headers)).toEqual(JSON.parse(BODY));
    expect(await verifyWebhook(SECRET, new TextEncoder().encode(BODY), new Headers(headers))).toEqual(
      JSON.parse(BODY),
    );
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    expect((await verifyWebhook(SECRET, BODY, upper)).status).toBe("succeeded");
    // A secret without its prefix is the same key.
    expect((await verifyWebhook(SECRET.slice("whsec_".length), BODY, headers)).id).toBe("6f0c2a8e");
  });

  it("agrees with standardwebhooks' verify over many random bodies and secrets", async () => {
    for (let i = 0; i < 50; i++) {
      const secret = `whsec_${toBase64(crypto.getRandomValues(new Uint8Array(8 + i)))}`;
      const body = JSON.stringify({ id: `job-${i}`, n: Math.random(), s: "x".repeat(i * 7) });
      const headers = signed(body, i, secret);
      expect(await verifyWebhook(secret, body, headers)).toEqual(new Webhook(secret).verify(body, headers));
    }
  });

  it("accepts one matching signature among several, and skips other versions", async () => {
    const headers = signed();
    const sig = headers["webhook-signature"];
    const several = `v1,${toBase64(new Uint8Array(32))} v2,${sig.slice(3)} v1,not*base64 ${sig}`;
    expect((await verifyWebhook(SECRET, BODY, { ...headers, "webhook-signature": several })).id).toBe(
      "6f0c2a8e",
    );
    await expect(
      verifyWebhook(SECRET, BODY, { ...headers, "webhook-signature": `v2,${sig.slice(3)}` }),
    ).rejects.toThrow(WebhookVerificationError);
  });

  it("refuses a changed body, id or timestamp, and another secret", async () => {
    const headers = signed();
    const refused = [
      verifyWebhook(SECRET, BODY.replace("succeeded", "failed"), headers),
      verifyWebhook(SECRET, BODY, { ...headers, "webhook-id": "msg_other" }),
      verifyWebhook(SECRET, BODY, {
        ...headers,
        "webhook-timestamp": String(Number(headers["webhook-timestamp"]) - 1),
      }),
      verifyWebhook(`whsec_${toBase64(new Uint8Array(32))}`, BODY, headers),
    ];
    // All four checked at once: awaiting them one by one leaves the later rejections unhandled
    // for a while, which Node reports as unhandled rejections on a slow machine.
    await Promise.all(refused.map((p) => expect(p).rejects.toThrow(/No matching signature/)));
  });

  it("refuses timestamps more than 5 minutes off, either way", async () => {
    await expect(verifyWebhook(SECRET, BODY, signed(BODY, 301))).rejects.toThrow(/too old/);
    await expect(verifyWebhook(SECRET, BODY, signed(BODY, -301))).rejects.toThrow(/too new/);
    expect((await verifyWebhook(SECRET, BODY, signed(BODY, 299))).id).toBe("6f0c2a8e");
    // The reference agrees on the edge.
    expect(() => new Webhook(SECRET).verify(BODY, signed(BODY, 301))).toThrow(/too old/);
    const headers = signed(BODY, 1000);
    expect((await verifyWebhook(SECRET, BODY, headers, { now: Date.now() - 1000 * 1000 })).status).toBe(
      "succeeded",
    );
  });

  it("refuses missing or malformed headers and a bad secret", async () => {
    const { "webhook-signature": _, ...unsigned } = signed();
    await expect(verifyWebhook(SECRET, BODY, unsigned)).rejects.toThrow(/Missing required headers/);
    await expect(verifyWebhook(SECRET, BODY, { ...signed(), "webhook-timestamp": "soon" })).rejects.toThrow(
      WebhookVerificationError,
    );
    await expect(verifyWebhook("whsec_%%%", BODY, signed())).rejects.toThrow(TypeError);
    await expect(verifyWebhook("whsec_", BODY, signed())).rejects.toThrow(/empty/);
  });
});
