export * from "./connection.ts";
export * from "./names.ts";
export * from "./payload-store.ts";
export * from "./producer.ts";
export * from "./settings.ts";
export * from "./worker-directory.ts";
