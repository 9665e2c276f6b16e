import { AppError } from "@hybrid/protocol";

/**
 * What a request whose client hung up ends with. Nobody reads it (the connection is closed):
 * it only stops the work that would have answered it.
 */
export const hungUp = (): AppError =>
  new AppError("invalid_request", "The client closed the connection before the answer was ready.");
