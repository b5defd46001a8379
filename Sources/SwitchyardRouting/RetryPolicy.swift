import SwitchyardHTTP

/// When a request may be sent again after an attempt failed, and where. Pure, so the rules
/// (above all: a request the server may have acted on is never sent twice unless it is
/// idempotent) are tested without sockets.
public enum RetryPolicy {
    /// What to do after an attempt failed.
    public enum Decision: Equatable, Sendable {
        /// Send it again on a fresh connection, to another server when the pool has one
        /// (a reused keep-alive connection that the server had closed).
        case resendOnFreshConnection
        /// Try another server (the pool's `retries` and `upstream_response` allow it).
        case tryAnotherServer
        /// Answer the client with an error.
        case fail
    }

    /// What is known about the attempt that failed.
    public struct Attempt: Sendable {
        public var method: HTTPMethod
        /// Attempts made so far for this request, the failed one included.
        public var attempts: Int
        /// The pool's `retries`.
        public var retries: Int
        /// Still within `upstream_response` of the request's start.
        public var withinDeadline: Bool
        /// Whether the failed connection had served an earlier request (a reused keep-alive connection).
        public var reusedConnection: Bool
        /// Whether this request was already resent once because of a reused connection.
        public var alreadyResent: Bool
        /// Whether any byte of the request was written to the server.
        public var wroteRequest: Bool
        /// Whether request bytes left the input buffer (a large body streamed past it): the request cannot be rebuilt.
        public var requestBytesCommitted: Bool
        /// Whether the whole request body has arrived from the client.
        public var requestComplete: Bool
        /// Whether the server had sent part of a response.
        public var partialResponse: Bool

        public init(method: HTTPMethod, attempts: Int, retries: Int, withinDeadline: Bool, reusedConnection: Bool, alreadyResent: Bool,
                    wroteRequest: Bool, requestBytesCommitted: Bool, requestComplete: Bool, partialResponse: Bool) {
            self.method = method
            self.attempts = attempts
            self.retries = retries
            self.withinDeadline = withinDeadline
            self.reusedConnection = reusedConnection
            self.alreadyResent = alreadyResent
            self.wroteRequest = wroteRequest
            self.requestBytesCommitted = requestBytesCommitted
            self.requestComplete = requestComplete
            self.partialResponse = partialResponse
        }
    }

    /// The connection could not be made (refused, connect timeout, TLS handshake): nothing was
    /// sent, so any method may go to another server.
    public static func afterConnectFailure(attempts: Int, retries: Int, withinDeadline: Bool) -> Decision {
        attempts <= retries && withinDeadline ? .tryAnotherServer : .fail
    }

    /// The server closed or reset the connection before a complete response head.
    public static func afterConnectionLost(_ a: Attempt) -> Decision {
        if a.partialResponse || a.requestBytesCommitted { return .fail }
        // Sending again is safe only if the server cannot have acted on the request: it is
        // idempotent, or none of it was written.
        let safeToResend = a.method.isIdempotent || !a.wroteRequest
        if a.reusedConnection && !a.alreadyResent && safeToResend { return .resendOnFreshConnection }
        if a.method.isIdempotent && a.requestComplete && a.attempts <= a.retries && a.withinDeadline { return .tryAnotherServer }
        return .fail
    }
}
