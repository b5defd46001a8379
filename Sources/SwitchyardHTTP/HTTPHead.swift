/// Headers the proxy treats specially, recognised once while parsing so that later
/// stages never compare names again.
public enum KnownHeader: UInt8, Sendable {
    case other
    case host
    case contentLength
    case transferEncoding
    case connection
    case keepAlive
    case te
    case trailer
    case upgrade
    case proxyConnection
    case expect
    case xForwardedFor
    case xForwardedProto
    case xForwardedHost
    case xRequestID
    /// `X_Forwarded_For`, `x-forwarded_proto` and the like: CGI, WSGI and PHP backends read
    /// underscores as dashes, so a client could pass forged forwarding headers that way.
    /// Dropped like the real ones, never appended to.
    case xForwardedLookalike

    /// Headers that describe one hop only and are never forwarded as they are
    /// (RFC 9110 section 7.6.1, plus the non-standard `Proxy-Connection`).
    @inlinable public var isHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .te, .trailer, .upgrade, .proxyConnection: return true
        default: return false
        }
    }
}

/// One header line of a parsed head: offsets into the buffer the head was parsed from.
public struct HeaderField: Sendable {
    public var nameStart: Int32
    public var nameLength: Int32
    public var valueStart: Int32
    public var valueLength: Int32
    public var kind: KnownHeader
    /// Set when the `Connection` header names this field, so it is hop-by-hop too.
    public var namedByConnection: Bool

    public init() {
        nameStart = 0; nameLength = 0; valueStart = 0; valueLength = 0
        kind = .other; namedByConnection = false
    }
}

public enum HTTPVersion: UInt8, Sendable {
    case http10
    case http11
}

/// How a message body is delimited on the wire (RFC 9112 section 6.3).
public enum BodyFraming: Equatable, Sendable {
    case none
    case contentLength(Int64)
    case chunked
    /// Only for responses: the body ends when the upstream closes the connection.
    case untilClose
}

/// A parsed request or response head. One instance is reused for every message a
/// worker parses, so parsing allocates nothing; all positions refer to the buffer
/// that was parsed and are valid only while that buffer is unchanged.
public final class HTTPHead {
    public let capacity: Int
    public private(set) var fields: UnsafeMutablePointer<HeaderField>
    public internal(set) var fieldCount: Int = 0

    // Request line.
    public internal(set) var methodStart: Int32 = 0
    public internal(set) var methodLength: Int32 = 0
    public internal(set) var targetStart: Int32 = 0
    public internal(set) var targetLength: Int32 = 0
    public internal(set) var method: HTTPMethod = .other
    // Status line.
    public internal(set) var statusCode: Int = 0
    public internal(set) var reasonStart: Int32 = 0
    public internal(set) var reasonLength: Int32 = 0

    public internal(set) var version: HTTPVersion = .http11
    /// Length of the whole head including the terminating empty line.
    public internal(set) var headLength: Int = 0

    // Semantics derived while parsing.
    public internal(set) var contentLength: Int64? = nil
    public internal(set) var isChunked = false
    /// `Transfer-Encoding` present but its final coding is not chunked (responses only).
    public internal(set) var hasNonChunkedTransferEncoding = false
    public internal(set) var connectionClose = false
    public internal(set) var connectionKeepAlive = false
    public internal(set) var connectionUpgrade = false
    public internal(set) var hasUpgradeHeader = false
    public internal(set) var expectsContinue = false
    public internal(set) var hostIndex: Int = -1
    public internal(set) var requestIDIndex: Int = -1

    public init(maxHeaders: Int) {
        capacity = max(1, maxHeaders)
        fields = .allocate(capacity: capacity)
        fields.initialize(repeating: HeaderField(), count: capacity)
    }

    deinit { fields.deallocate() }

    func reset() {
        fieldCount = 0
        methodStart = 0; methodLength = 0; targetStart = 0; targetLength = 0; method = .other
        statusCode = 0; reasonStart = 0; reasonLength = 0
        version = .http11; headLength = 0
        contentLength = nil; isChunked = false; hasNonChunkedTransferEncoding = false
        connectionClose = false; connectionKeepAlive = false; connectionUpgrade = false
        hasUpgradeHeader = false; expectsContinue = false; hostIndex = -1; requestIDIndex = -1
    }

    /// Whether the client asked for the connection to stay open after this message.
    public var wantsKeepAlive: Bool {
        switch version {
        case .http11: return !connectionClose
        case .http10: return connectionKeepAlive && !connectionClose
        }
    }

    /// Whether this request asks to switch protocols (e.g. WebSocket).
    public var isUpgradeRequest: Bool { connectionUpgrade && hasUpgradeHeader }

    /// Request body framing; requests never use `.untilClose`.
    public var requestFraming: BodyFraming {
        if isChunked { return .chunked }
        if let length = contentLength, length > 0 { return .contentLength(length) }
        return .none
    }

    /// Response body framing given the request it answers (RFC 9112 section 6.3).
    public func responseFraming(requestMethod: HTTPMethod) -> BodyFraming {
        if requestMethod == .head || statusCode < 200 || statusCode == 204 || statusCode == 304 {
            return .none
        }
        if isChunked { return .chunked }
        if hasNonChunkedTransferEncoding { return .untilClose }
        if let length = contentLength { return length == 0 ? .none : .contentLength(length) }
        return .untilClose
    }
}

/// The methods the proxy needs to tell apart.
public enum HTTPMethod: UInt8, Sendable {
    case get, head, post, put, delete, options, patch, connect, trace, other

    /// Safe or idempotent methods that may be sent again after a failure (RFC 9110 section 9.2.2).
    public var isIdempotent: Bool {
        switch self {
        case .get, .head, .put, .delete, .options, .trace: return true
        default: return false
        }
    }
}
