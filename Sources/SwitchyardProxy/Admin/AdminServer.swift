import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardHTTP
import SwitchyardRouting

/// The admin API: HTTP/1.1 and JSON on a Unix domain socket (mode 0600), served by
/// libevent's evhttp on the control thread. Workers are never blocked by it: a change is
/// published as a new snapshot and acknowledged by each worker between its events.
/// Its endpoints are those of `AdminAPI.endpoints`. The reference is docs/admin-api.md; the
/// OpenAPI document is docs/openapi.yaml.
final class AdminServer {
    /// The parameters of a query string (`a=1&b=x%20y&flag`), percent-decoded; a key
    /// without a value reads "true". Shared by the admin API and the observability listener.
    static func queryParameters(_ text: Substring) -> [String: String] {
        var query: [String: String] = [:]
        for item in text.split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = kv.first, !key.isEmpty else { continue }
            let name = String(key).removingPercentEncoding ?? String(key)
            query[name] = kv.count > 1 ? String(kv[1]).removingPercentEncoding ?? String(kv[1]) : "true"
        }
        return query
    }

    let control: ControlPlane
    let socketPath: String?
    /// Bearer tokens accepted on the TCP listener, by name.
    let tokens: [(name: String, token: [UInt8])]
    private var http: OpaquePointer?
    /// The TCP listener has its own evhttp, so that TLS applies to it and not to the Unix socket.
    private var tcpHTTP: OpaquePointer?
    private var tcpTLS: TLSServerContext?
    /// Writes the status and scrapes while the control thread goes on.
    private var replies: ReplyThread?
    let startTime = Date()

    /// Limits of the admin listeners: the request head, how long a TCP connection may stay
    /// silent or unfinished, and how many TCP connections may have requests at once.
    static let maxHeaderBytes = 8192
    static let tcpTimeoutSeconds: Int32 = 10
    static let maxTCPConnections = 64
    /// TCP connections that have sent a request and are still open.
    private var tcpConnections = Set<OpaquePointer>()
    let clientRoles: AdminClientRoles?

    /// The socket file's inode, so that a process that was taken over does not remove its successor's.
    private var socketInode: ino_t = 0

    /// - Parameter replace: take over the socket path from a running process (binary upgrade).
    init(control: ControlPlane, base: OpaquePointer, config: AdminConfig, replace: Bool = false) throws {
        self.control = control
        socketPath = config.socket
        tokens = config.tokens.sorted { $0.key < $1.key }.map { ($0.key, Array($0.value.utf8)) }
        clientRoles = config.clientRoles
        guard let http = evhttp_new(base) else { throw ProxyError("evhttp_new failed") }
        self.http = http
        // Every method reaches the handler, so that unsupported ones get a JSON 405, not evhttp's HTML 501.
        evhttp_set_allowed_methods(http, UInt16.max)
        evhttp_set_max_body_size(http, AdminBody.maxBytes)
        evhttp_set_max_headers_size(http, Self.maxHeaderBytes)
        if let socketPath {
            if replace { unlink(socketPath) }
            let fd = try Self.listenUnix(path: socketPath)
            socketInode = Self.inode(socketPath)
            guard evhttp_accept_socket(http, fd) == 0 else { throw ProxyError("cannot serve the admin socket \(socketPath)") }
        }
        evhttp_set_gencb(http, adminRequestCallback, Unmanaged.passUnretained(self).toOpaque())
        replies = try ReplyThread(base: base, name: "admin") { [unowned self] request, written in
            send(Reply(status: written.status, body: written.body, contentType: written.contentType, headers: written.headers), to: request)
        }
        if let tcp = config.tcp {
            guard let tcpHTTP = evhttp_new(base) else { throw ProxyError("evhttp_new failed") }
            self.tcpHTTP = tcpHTTP
            evhttp_set_allowed_methods(tcpHTTP, UInt16.max)
            evhttp_set_max_body_size(tcpHTTP, AdminBody.maxBytes)
            evhttp_set_max_headers_size(tcpHTTP, Self.maxHeaderBytes)
            // A connection that sends nothing, or a request that never completes, is closed after this.
            evhttp_set_timeout(tcpHTTP, Self.tcpTimeoutSeconds)
            if let tls = config.tls {
                let context = try TLSServerContext(config: tls, listener: "admin", requireClientCertificate: false)
                tcpTLS = context
                control.servedCertificates["admin"] = context.expiries
                evhttp_set_bevcb(tcpHTTP, adminTLSBufferEventCallback, Unmanaged.passUnretained(self).toOpaque())
            }
            guard evhttp_bind_socket(tcpHTTP, tcp.host, tcp.port) == 0 else {
                throw ProxyError("cannot listen on admin.tcp \(tcp): \(String(cString: strerror(errno))); is the port in use?")
            }
            evhttp_set_gencb(tcpHTTP, adminRequestCallback, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    /// A TLS session for each TCP admin connection.
    fileprivate func tlsBufferEvent(_ base: OpaquePointer?) -> OpaquePointer? {
        guard let tcpTLS, let ssl = SSL_new(tcpTLS.defaultContext) else { return nil }
        return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
    }

    /// The common name of a verified client certificate on a TLS admin connection.
    static func clientCertificateName(_ req: OpaquePointer) -> String? {
        guard let connection = evhttp_request_get_connection(req), let bev = evhttp_connection_get_bufferevent(connection),
              let ssl = bufferevent_openssl_get_ssl(bev), SSL_get_verify_result(ssl) == Int(X509_V_OK),
              let certificate = SSL_get0_peer_certificate(ssl), let subject = X509_get_subject_name(certificate) else { return nil }
        var name = [CChar](repeating: 0, count: 256)
        guard X509_NAME_get_text_by_NID(subject, NID_commonName, &name, Int32(name.count)) > 0 else { return nil }
        return String(cString: name)
    }

    func close() {
        replies?.close()
        replies = nil
        if let http { evhttp_free(http) }
        http = nil
        if let tcpHTTP { evhttp_free(tcpHTTP) }
        tcpHTTP = nil
        if let socketPath, Self.inode(socketPath) == socketInode { unlink(socketPath) }
    }

    static func inode(_ path: String) -> ino_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_ino : 0
    }

    /// The actor for a TCP request: the name of the bearer token it carries. Compared in
    /// constant time so response timing does not reveal a token.
    func tokenName(_ authorization: String?) -> String? {
        guard let authorization, authorization.hasPrefix("Bearer ") else { return nil }
        let presented = Array(authorization.dropFirst("Bearer ".count).utf8)
        var found: String? = nil
        for (name, token) in tokens {
            var difference = UInt8(presented.count == token.count ? 0 : 1)
            for i in 0..<token.count { difference |= token[i] ^ (i < presented.count ? presented[i] : 0) }
            if difference == 0 { found = name }
        }
        return found
    }

    /// Binds the socket with mode 0600. A stale socket file is replaced; a live one (another
    /// Switchyard answering on it) is an error.
    static func listenUnix(path: String) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw ProxyError("admin socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        if FileManager.default.fileExists(atPath: path) {
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let inUse = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, length) }
            } == 0
            Glibc.close(probe)
            if inUse { throw ProxyError("admin socket \(path) is in use by another process; stop it or choose another admin.socket") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let old = umask(0o177) // the socket file is created 0600: only the owner may connect
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        umask(old)
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw ProxyError("cannot bind admin socket \(path): \(reason); check the directory exists and is writable")
        }
        chmod(path, 0o600)
        guard listen(fd, 64) == 0 else { throw ProxyError("cannot listen on admin socket \(path)") }
        return fd
    }

    // MARK: Requests

    struct Request {
        let method: String
        let path: [Substring]
        let query: [String: String]
        let body: [String: Any]
        let ifMatch: UInt64?
        let lockToken: String?
        let actor: Actor
        /// `Accept-Encoding` allows gzip.
        let acceptsGzip: Bool
    }

    struct Reply {
        var status: Int
        var body: Data
        var contentType = "application/json"
        /// More header fields (`Content-Encoding`, `Vary`).
        var headers: [(name: String, value: String)] = []
        /// Set for a reply the reply thread writes (`body` is empty until then).
        var writtenLater: (@Sendable () -> RenderedReply)? = nil

        /// A reply written on the reply thread by `work`.
        static func later(_ work: @escaping @Sendable () -> RenderedReply) -> Reply {
            Reply(status: 0, body: Data(), writtenLater: work)
        }
    }

    fileprivate func handle(_ req: OpaquePointer) {
        var reply: Reply
        do throws(AdminError) {
            try admitConnection(req)
            reply = try route(try parse(req))
        } catch {
            reply = Self.error(error)
        }
        if let work = reply.writtenLater {
            if let replies, replies.submit(req, work) { return }
            reply = Self.error(Self.busy)
        }
        send(reply, to: req)
    }

    static let busy = AdminError(503, "busy", "\(ReplyThread.maxWaiting) statuses and scrapes are already waiting to be written; retry shortly (Retry-After)")

    /// Refuses (503) a whole status or a scrape before anything is copied for it when
    /// `ReplyThread.maxWaiting` already wait: a flood of them costs the control thread little.
    func checkRoomForLaterReply() throws(AdminError) {
        guard replies?.hasRoom ?? false else { throw Self.busy }
    }

    /// Sends `reply` to `req` (on the control thread).
    private func send(_ reply: Reply, to req: OpaquePointer) {
        let headers = evhttp_request_get_output_headers(req)
        if reply.status == 503 {
            evhttp_add_header(headers, "Connection", "close")
            evhttp_add_header(headers, "Retry-After", "1")
        }
        evhttp_add_header(headers, "Content-Type", reply.contentType)
        for field in reply.headers { evhttp_add_header(headers, field.name, field.value) }
        if reply.status == 401 { evhttp_add_header(headers, "WWW-Authenticate", "Bearer realm=\"switchyard\"") }
        if reply.status == 405 {
            let path = String(cString: evhttp_request_get_uri(req)).split(separator: "?", maxSplits: 1).first ?? ""
            evhttp_add_header(headers, "Allow", AdminAPI.allowedMethods(path: String(path)).joined(separator: ", "))
        }
        let buffer = evbuffer_new()
        reply.body.withUnsafeBytes { _ = evbuffer_add(buffer, $0.baseAddress, $0.count) }
        evhttp_send_reply(req, Int32(reply.status), HTTPStatusText.reason(reply.status), buffer)
        evbuffer_free(buffer)
    }

    /// Counts TCP connections as they send their first request; past the limit, the request
    /// is answered 503 and the connection closed. (Connections that send nothing are closed by
    /// the listener's timeout.)
    private func admitConnection(_ req: OpaquePointer) throws(AdminError) {
        guard let fd = Self.socketFD(req), !Self.isUnixSocket(fd),
              let connection = evhttp_request_get_connection(req), !tcpConnections.contains(connection) else { return }
        guard tcpConnections.count < Self.maxTCPConnections else {
            throw AdminError(503, "too many connections",
                             "the TCP admin listener serves at most \(Self.maxTCPConnections) connections at once; close idle ones and retry")
        }
        tcpConnections.insert(connection)
        evhttp_connection_set_closecb(connection, adminConnectionClosedCallback, Unmanaged.passUnretained(self).toOpaque())
    }

    fileprivate func connectionClosed(_ connection: OpaquePointer) { tcpConnections.remove(connection) }

    /// Reads a request in the order that keeps an unauthenticated peer from costing anything:
    /// who is asking (peer user, certificate or token) first, then whether a browser could have
    /// sent it from another site, and only then the body.
    private func parse(_ req: OpaquePointer) throws(AdminError) -> Request {
        let command = evhttp_request_get_command(req)
        let method: String
        switch command {
        case EVHTTP_REQ_GET: method = "GET"
        case EVHTTP_REQ_POST: method = "POST"
        case EVHTTP_REQ_PUT: method = "PUT"
        case EVHTTP_REQ_DELETE: method = "DELETE"
        case EVHTTP_REQ_HEAD: method = "HEAD"
        case EVHTTP_REQ_PATCH: method = "PATCH"
        case EVHTTP_REQ_OPTIONS: method = "OPTIONS"
        default: method = "OTHER"
        }
        let headers = evhttp_request_get_input_headers(req)
        func header(_ name: String) -> String? { evhttp_find_header(headers, name).map { String(cString: $0) } }
        let readOnly = method == "GET" || method == "HEAD"

        let user: String
        if let fd = Self.socketFD(req), Self.isUnixSocket(fd) {
            user = Self.peerUser(fd)
        } else {
            // TCP: a verified client certificate, or a known bearer token; its name is the actor.
            if let name = Self.clientCertificateName(req) {
                if let roles = clientRoles {
                    guard roles.operate.contains(name) || (readOnly && roles.read.contains(name)) else {
                        throw AdminError(403, "forbidden", roles.read.contains(name)
                            ? "certificate \(name) may only read (admin.client_roles.read); \(method) needs admin.client_roles.operate"
                            : "certificate \(name) is not listed in admin.client_roles")
                    }
                }
                user = "cert:\(name)"
            } else if let name = tokenName(header("Authorization")) {
                user = "token:\(name)"
            } else {
                throw AdminError(401, "unauthorized", "the TCP admin listener needs Authorization: Bearer TOKEN (admin.tokens_file) or a client certificate signed by admin.tls.client_ca")
            }
            // A browser attaches a client certificate (or a cookie) to requests that any web page
            // makes; only a request that says it was not sent cross-site, as JSON, may change anything.
            if !readOnly { try Self.refuseCrossSite(header: header) }
        }

        let uri = String(cString: evhttp_request_get_uri(req))
        let parts = uri.split(separator: "?", maxSplits: 1)
        let path = (parts.first ?? "").split(separator: "/")
        let query = parts.count > 1 ? Self.queryParameters(parts[1]) : [:]
        let input = evhttp_request_get_input_buffer(req)
        let length = evbuffer_get_length(input)
        var bytes: [UInt8] = []
        if length > 0, let start = evbuffer_pullup(input, -1) {
            bytes = Array(UnsafeBufferPointer(start: start, count: length))
        }
        let body = try AdminBody.object(from: bytes)
        var ifMatch: UInt64? = nil
        if let text = header("If-Match") {
            guard let value = UInt64(text.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))) else {
                throw AdminError(400, "invalid If-Match", "If-Match must be a state generation number from /v1/status")
            }
            ifMatch = value
        }
        return Request(method: method, path: path, query: query, body: body, ifMatch: ifMatch,
                       lockToken: header("X-Switchyard-Lock"), actor: Actor(user: user, label: header("X-Switchyard-Actor")),
                       acceptsGzip: AcceptEncoding.allowsGzip(header("Accept-Encoding")))
    }

    /// Changes over TCP must not come from a web page on another site: `Sec-Fetch-Site` must be
    /// absent, `same-origin` or `none`; `Origin`, when present, must name this listener's host
    /// (the `Host` header); and a body must be declared `application/json`, which a page can
    /// send cross-site only after a CORS preflight that this listener never grants.
    static func refuseCrossSite(header: (String) -> String?) throws(AdminError) {
        if let site = header("Sec-Fetch-Site")?.lowercased(), site != "same-origin" && site != "none" {
            throw AdminError(403, "cross-site request", "Sec-Fetch-Site is \(site): changes are not accepted from another site's page")
        }
        if let origin = header("Origin") {
            let host = header("Host")?.lowercased() ?? ""
            let originHost = origin.lowercased().split(separator: "/", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? ""
            guard !host.isEmpty, originHost == host else {
                throw AdminError(403, "cross-site request", "Origin \(origin) is not this admin listener (\(host)); changes are not accepted from another site's page")
            }
        }
        let contentLength = Int(header("Content-Length") ?? "0") ?? 0
        if contentLength > 0 || header("Transfer-Encoding") != nil {
            let type = header("Content-Type")?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
            guard type == "application/json" else {
                throw AdminError(415, "unsupported media type", "send the body with Content-Type: application/json")
            }
        }
    }

    static func socketFD(_ req: OpaquePointer) -> Int32? {
        guard let connection = evhttp_request_get_connection(req),
              let bev = evhttp_connection_get_bufferevent(connection) else { return nil }
        return bufferevent_getfd(bev)
    }

    static func isUnixSocket(_ fd: Int32) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return ok == 0 && Int32(storage.ss_family) == AF_UNIX
    }

    static func peerUser(_ fd: Int32) -> String {
        var uid: UInt32 = 0
        guard sy_peer_uid(fd, &uid) == 0 else { return "unknown" }
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var storage = [CChar](repeating: 0, count: 1024)
        if getpwuid_r(uid, &entry, &storage, storage.count, &result) == 0, result != nil {
            return String(cString: entry.pw_name)
        }
        return "uid:\(uid)"
    }

    /// Finds the request's endpoint in `AdminAPI.endpoints` and carries it out: an unknown path
    /// is 404, a known path with another method 405 (its methods go in `Allow`).
    // MARK: Helpers

    static func ok(_ object: Any) -> Reply {
        Reply(status: 200, body: AdminJSON.data(object))
    }

    static func error(_ e: AdminError) -> Reply {
        var reply = ok(["error": e.error, "detail": e.detail])
        reply.status = e.status
        return reply
    }

    static func lockJSON(_ lock: LockInfo, withToken: Bool) -> [String: Any] {
        var out: [String: Any] = ["owner": lock.owner, "reason": lock.reason,
                                  "since": ISO8601DateFormatter().string(from: lock.since),
                                  "expires": ISO8601DateFormatter().string(from: lock.expires),
                                  "service": lock.service ?? NSNull()]
        if withToken { out["token"] = lock.token }
        return out
    }
}

enum HTTPStatusText {
    static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 409: return "Conflict"
        case 403: return "Forbidden"
        case 412: return "Precondition Failed"
        case 413: return "Payload Too Large"
        case 415: return "Unsupported Media Type"
        case 423: return "Locked"
        case 503: return "Service Unavailable"
        default: return status >= 500 ? "Internal Server Error" : "Error"
        }
    }
}

private let adminRequestCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { req, context in
    guard let req, let context else { return }
    Unmanaged<AdminServer>.fromOpaque(context).takeUnretainedValue().handle(req)
}

private let adminConnectionClosedCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { connection, context in
    guard let connection, let context else { return }
    Unmanaged<AdminServer>.fromOpaque(context).takeUnretainedValue().connectionClosed(connection)
}

private let adminTLSBufferEventCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> OpaquePointer? = { base, context in
    guard let context else { return nil }
    return Unmanaged<AdminServer>.fromOpaque(context).takeUnretainedValue().tlsBufferEvent(base)
}
