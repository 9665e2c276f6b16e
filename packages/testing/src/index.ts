export * from "./dns-server.ts";
export * from "./model-info.ts";
export * from "./redis.ts";
