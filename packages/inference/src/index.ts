export * from "./generator/index.ts";
export * from "./image.ts";
export * from "./random.ts";
export * from "./registry.ts";
export type { ExecutionProvider, SessionSettings } from "./session-cache.ts";
export type { SessionHostOptions } from "./session-host.ts";
export * from "./vae-runtime.ts";
export * from "./video.ts";
