export * from "./errors.ts";
export * from "./flux.ts";
export * from "./half.ts";
export * from "./media.ts";
export * from "./query.ts";
export * from "./schemas.ts";
export * from "./tensor.ts";
export * from "./vae-plan.ts";
