/**
 * The client's error tree, the same as the Python client's:
 *
 *     SessionMemoryError
 *     ├── TransportError        the request did not complete; `url` says where it went
 *     │   ├── ConnectError      nothing accepted the connection (is the service running?)
 *     │   └── RequestTimeout    no answer within the timeout
 *     └── ProblemError          the service answered with an error: `status` and the
 *                               RFC 9457 `title`, `detail`, `type` and whole `problem`
 *
 * A session id outside the allowed alphabet throws a `RangeError` before any
 * request is sent; an aborted call rejects with the signal's reason.
 */

export class SessionMemoryError extends Error {
  override name = 'SessionMemoryError';
}

export class TransportError extends SessionMemoryError {
  override name = 'TransportError';
  readonly url: string;
  constructor(message: string, options: { url: string; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.url = options.url;
  }
}

export class ConnectError extends TransportError {
  override name = 'ConnectError';
}

export class RequestTimeout extends TransportError {
  override name = 'RequestTimeout';
}

/** The members of an RFC 9457 problem details object; extra members are kept. */
export type Problem = {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  instance?: string;
  [member: string]: unknown;
};

export class ProblemError extends SessionMemoryError {
  override name = 'ProblemError';
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly type: string;
  readonly problem: Problem;
  constructor(
    status: number,
    options: { title: string; detail: string; type?: string; problem?: Problem },
  ) {
    super(`${status} ${options.title}: ${options.detail}`);
    this.status = status;
    this.title = options.title;
    this.detail = options.detail;
    this.type = options.type ?? 'about:blank';
    this.problem = options.problem ?? {};
  }
}
