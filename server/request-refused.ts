/**
 * A request the coordinator will not serve, with the status and headers to answer it with (server/http.ts turns it
 * into a JSON `{error}`): thrown by the routes, the body readers and the body budget.
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
