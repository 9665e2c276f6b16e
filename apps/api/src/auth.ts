import { AppError } from "@hybrid/protocol";
import type { RequestHandler, Response } from "express";
import { type ApiKeyRecord, bearerToken, type KeyStore } from "./keys.ts";
import { unknownModel } from "./model-lookup.ts";

/** Who is calling: the owner id their jobs are filed under, and their key when keys are on. */
export interface Principal {
  owner: string;
  key: ApiKeyRecord | null;
}

/** The owner of every job when the service runs without API keys. */
export const ANONYMOUS = "anonymous";

/**
 * With keys in the keys file, a request needs `Authorization: Bearer <key>` (401 otherwise);
 * without, everyone is the anonymous principal. Reads the keys in memory only: the file is
 * followed in the background (`KeyStore.watch`), so no request waits on the file system here.
 */
export function authenticate(keys: KeyStore): RequestHandler {
  return async (req, res, next) => {
    if (!keys.enabled) {
      res.locals.principal = { owner: ANONYMOUS, key: null } satisfies Principal;
      return next();
    }
    const key = keys.authenticate(bearerToken(req.headers.authorization));
    if (!key) {
      res.setHeader("WWW-Authenticate", 'Bearer realm="hybrid-inference"');
      throw new AppError(
        "unauthorized",
        req.headers.authorization
          ? "The API key is not valid."
          : "This service needs an API key: send Authorization: Bearer <key>.",
      );
    }
    res.locals.principal = { owner: key.id, key } satisfies Principal;
    next();
  };
}

export const principalOf = (res: Response): Principal => res.locals.principal as Principal;

/**
 * A key limited to some models may use only those: any other is answered as a model that does
 * not exist (404 `unknown_model`, word for word), so the key cannot probe for the others.
 */
export function assertModelAllowed(res: Response, model: string): void {
  const models = principalOf(res).key?.models;
  if (models && !models.includes(model)) throw unknownModel(model);
}

/** Whether the caller's key may use the model (to list only those). */
export const modelAllowed = (res: Response, model: string): boolean =>
  principalOf(res).key?.models?.includes(model) ?? true;
