/**
 * session-memory's wire protocol, ported from the Python client's
 * `session_memory_client/protocol.py`: the session-id rule, the path encoding,
 * header names and problem types. test/protocol.test.ts fails when the two differ.
 *
 * A session id is 1 to 256 Unicode code points. Refused: the C0 and C1 control
 * characters (U+0000 to U+001F, U+007F to U+009F), surrogates, the line and
 * paragraph separators (U+2028, U+2029), and `/`, because the id is one URL path
 * segment. Everything else is allowed and round-trips exactly.
 */

export const API_PREFIX = '/v1';

export const IDEMPOTENCY_KEY = 'Idempotency-Key';
export const IF_MATCH = 'If-Match';
export const ETAG = 'ETag';
export const SESSION_TTL = 'Session-TTL';
export const SESSION_METADATA = 'Session-Metadata';
/** A run lease's fencing token, sent with every write of the run that holds it. */
export const RUN_LEASE = 'Run-Lease';
export const LAST_EVENT_ID = 'Last-Event-ID';
export const REQUEST_ID = 'X-Request-ID';

/** Sequence numbers, revisions and cursors are signed 64-bit integers on the wire. */
export const MAX_SEQ = 2n ** 63n - 1n;

export const PROBLEM_MEDIA_TYPE = 'application/problem+json';
export const PROBLEM_TYPE_PREFIX = 'urn:session-memory:problem:';

/** The `type` of every problem the service answers (RFC 9457), by slug. */
export const ProblemType = {
  MALFORMED_BODY: `${PROBLEM_TYPE_PREFIX}malformed-body`,
  UNAUTHORIZED: `${PROBLEM_TYPE_PREFIX}unauthorized`,
  SESSION_NOT_FOUND: `${PROBLEM_TYPE_PREFIX}session-not-found`,
  IDEMPOTENCY_KEY_IN_FLIGHT: `${PROBLEM_TYPE_PREFIX}idempotency-key-in-flight`,
  PRECONDITION_FAILED: `${PROBLEM_TYPE_PREFIX}precondition-failed`,
  PAYLOAD_TOO_LARGE: `${PROBLEM_TYPE_PREFIX}payload-too-large`,
  UNSUPPORTED_MEDIA_TYPE: `${PROBLEM_TYPE_PREFIX}unsupported-media-type`,
  INVALID_INPUT: `${PROBLEM_TYPE_PREFIX}invalid-input`,
  IDEMPOTENCY_KEY_REUSED: `${PROBLEM_TYPE_PREFIX}idempotency-key-reused`,
  HEADERS_TOO_LARGE: `${PROBLEM_TYPE_PREFIX}headers-too-large`,
  MALFORMED_REQUEST: `${PROBLEM_TYPE_PREFIX}malformed-request`,
  REQUEST_TIMEOUT: `${PROBLEM_TYPE_PREFIX}request-timeout`,
  MISDIRECTED_REQUEST: `${PROBLEM_TYPE_PREFIX}misdirected-request`,
  TOO_MANY_CONNECTIONS: `${PROBLEM_TYPE_PREFIX}too-many-connections`,
  INTERNAL_ERROR: `${PROBLEM_TYPE_PREFIX}internal-error`,
  STORE_UNAVAILABLE: `${PROBLEM_TYPE_PREFIX}store-unavailable`,
  SESSION_EXISTS: `${PROBLEM_TYPE_PREFIX}session-exists`,
  TOO_MANY_STREAMS: `${PROBLEM_TYPE_PREFIX}too-many-streams`,
  SESSION_LEASED: `${PROBLEM_TYPE_PREFIX}session-leased`,
  LEASE_LOST: `${PROBLEM_TYPE_PREFIX}lease-lost`,
  LEASE_NOT_HELD: `${PROBLEM_TYPE_PREFIX}lease-not-held`,
} as const;

export const MAX_SESSION_ID_LENGTH = 256;

function refused(codePoint: number): boolean {
  return (
    codePoint <= 0x1f ||
    (codePoint >= 0x7f && codePoint <= 0x9f) ||
    (codePoint >= 0xd800 && codePoint <= 0xdfff) ||
    codePoint === 0x2028 ||
    codePoint === 0x2029 ||
    codePoint === 0x2f
  );
}

/** Say what is wrong with `sessionId`, or return `null` when it is valid. */
export function sessionIdError(sessionId: unknown): string | null {
  if (typeof sessionId !== 'string') {
    return `session id must be a string, not ${sessionId === null ? 'null' : typeof sessionId}`;
  }
  if (sessionId.length === 0) return 'session id must not be empty';
  // Python counts code points; a JS string iterates by code point, and a lone
  // surrogate comes out as one code point in the surrogate range.
  const codePoints = [...sessionId];
  if (codePoints.length > MAX_SESSION_ID_LENGTH) {
    return (
      `session id is ${codePoints.length} characters long; ` +
      `the maximum is ${MAX_SESSION_ID_LENGTH}`
    );
  }
  for (let index = 0; index < codePoints.length; index++) {
    const codePoint = codePoints[index]!.codePointAt(0)!;
    if (refused(codePoint)) {
      const hex = codePoint.toString(16).toUpperCase().padStart(4, '0');
      return (
        `session id has a refused character at index ${index} (U+${hex}); ` +
        "control characters, surrogates, line separators and '/' are not allowed"
      );
    }
  }
  return null;
}

/** Return `sessionId` unchanged, or throw a `TypeError`/`RangeError` saying why it is refused. */
export function validateSessionId(sessionId: string): string {
  const error = sessionIdError(sessionId);
  if (error !== null) {
    throw typeof sessionId === 'string' ? new RangeError(error) : new TypeError(error);
  }
  return sessionId;
}

/** The path of a session's resource: `/v1/sessions/<id>`, the id one encoded segment. */
export function sessionPath(sessionId: string): string {
  // Python's quote(safe="") leaves only A-Z a-z 0-9 _ . - ~ unencoded;
  // encodeURIComponent also leaves ! ' ( ) *, so encode those here. Dots are
  // encoded too: "." and ".." would otherwise be dot segments that URL
  // normalisation removes.
  const encoded = encodeURIComponent(sessionId).replace(
    /[!'()*.]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase(),
  );
  return `${API_PREFIX}/sessions/${encoded}`;
}
