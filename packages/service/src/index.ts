export * from "./logger.ts";
export * from "./redis-faults.ts";
export * from "./redis-url.ts";
export * from "./settings.ts";
export * from "./shared-env.ts";
