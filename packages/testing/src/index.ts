export * from "./model-info.ts";
export * from "./redis.ts";
