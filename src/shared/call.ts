// Who is calling, and the facts of the call. The transport builds both; the
// domain records the call's facts (audit) but never trusts them for decisions.

export interface ClientInfo {
  ip?: string | undefined;
  userAgent?: string | undefined;
}

/** Per-call facts the domain records (audit) but never trusts for decisions. */
export interface CallContext {
  client: ClientInfo;
  /** Ours, unique per call. */
  requestId?: string | undefined;
  /** Whatever the client named its request (X-Request-Id): recorded, never trusted. */
  clientRequestId?: string | undefined;
}

/** Who is calling, as proved by a valid access token on an active session. */
export interface Principal {
  userId: string;
  sessionId: string;
  /** When the user last proved who they are on this session (auth_time). */
  authTime?: Date | undefined;
  amr?: readonly string[] | undefined;
}
