export * from "./catalog.ts";

export * from "./connection.ts";
export * from "./job-event-hub.ts";
export * from "./job-store.ts";
export * from "./logger.ts";
export * from "./names.ts";
export * from "./payload-store.ts";
export * from "./producer.ts";
export * from "./queues.ts";
export * from "./reply-channel.ts";
export * from "./result-cache.ts";
export * from "./settings.ts";
export * from "./worker-directory.ts";
export * from "./workers.ts";
