/**
 * A request the coordinator will not serve, with the status and headers to answer it with (server/http.ts turns it
 * into a JSON `{error}`). Thrown by the body readers and the body budget (docs/security.md, "Memory and the event loop").
 */
export class RequestRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
