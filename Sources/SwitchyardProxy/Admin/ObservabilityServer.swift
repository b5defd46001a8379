import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardHTTP

/// The observability listener (`observability.bind`): `GET /metrics` (the admin API's
/// Prometheus text), `GET /ready` and `GET /live`, over plain HTTP without a token. It can
/// change nothing: every other path is 404 and every other method 405. Served by evhttp on the
/// control thread like the admin API, so it never blocks a worker; it stays up while
/// connections drain at a graceful stop, so that `/ready` says 503 then.
final class ObservabilityServer {
    let control: ControlPlane
    private var http: OpaquePointer?
    /// Connections that have sent a request and are still open.
    private var connections = Set<OpaquePointer>()
    /// Writes scrapes while the control thread goes on.
    private var replies: ReplyThread?

    /// Limits, as on the TCP admin listener: the request head, how long a connection may stay
    /// silent or unfinished, how many may have requests at once.
    static let maxHeaderBytes = 8192
    static let maxBodyBytes = 1024
    static let timeoutSeconds: Int32 = 10
    static let maxConnections = 64
    static let paths = ["/metrics", "/ready", "/live"]

    init(control: ControlPlane, base: OpaquePointer, bind address: SocketAddress) throws {
        self.control = control
        guard let http = evhttp_new(base) else { throw ProxyError("evhttp_new failed") }
        self.http = http
        // Every method reaches the handler, so that the answer to one that changes things is a plain 405.
        evhttp_set_allowed_methods(http, UInt16.max)
        evhttp_set_max_body_size(http, Self.maxBodyBytes)
        evhttp_set_max_headers_size(http, Self.maxHeaderBytes)
        evhttp_set_timeout(http, Self.timeoutSeconds)
        // SO_REUSEPORT (as the listeners): a process taking over binds the same address while this one hands over.
        let fd: Int32
        do { fd = try Sockets.listen(on: address, backlog: 128) } catch {
            evhttp_free(http)
            self.http = nil
            throw ProxyError("cannot listen on observability.bind \(address): \(error); is the port in use?")
        }
        guard evhttp_accept_socket(http, fd) == 0 else {
            Glibc.close(fd)
            evhttp_free(http)
            self.http = nil
            throw ProxyError("cannot serve observability.bind \(address)")
        }
        evhttp_set_gencb(http, observabilityRequestCallback, Unmanaged.passUnretained(self).toOpaque())
        replies = try ReplyThread(base: base, name: "observability") { [unowned self] request, written in
            send(Reply(status: written.status, body: written.body, contentType: written.contentType, headers: written.headers), to: request)
        }
    }

    func close() {
        replies?.close()
        replies = nil
        if let http { evhttp_free(http) }
        http = nil
        connections.removeAll()
    }

    struct Reply {
        var status: Int
        var body: Data
        var contentType = "text/plain; charset=utf-8"
        var allow: String? = nil
        /// More header fields (`Content-Encoding`, `Vary`).
        var headers: [(name: String, value: String)] = []
        /// Set for a reply the reply thread writes (`body` is empty until then).
        var writtenLater: (@Sendable () -> RenderedReply)? = nil
    }

    static var busy: Reply {
        Reply(status: 503, body: Data("busy: \(ReplyThread.maxWaiting) scrapes are already waiting to be written; retry shortly (Retry-After)\n".utf8),
              headers: [("Retry-After", "1")])
    }

    /// The answer to `method` on `path`, with the query string's parameters.
    func reply(method: evhttp_cmd_type, path: String, query: [String: String] = [:], acceptsGzip: Bool = false) -> Reply {
        guard Self.paths.contains(path) else {
            return Reply(status: 404, body: Data("no such path: the observability listener serves GET /metrics, /ready and /live\n".utf8))
        }
        guard method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD else {
            return Reply(status: 405, body: Data("\(path) takes GET; the observability listener changes nothing\n".utf8), allow: "GET, HEAD")
        }
        switch path {
        case "/metrics":
            do {
                let servers = try AdminServer.serversParameter(query["servers"])
                // Refused before anything is copied: a flood of scrapes costs the control thread little.
                guard replies?.hasRoom ?? false else { return Self.busy }
                let source = AdminServer.metricsSource(control: control, servers: servers)
                return Reply(status: 0, body: Data(), writtenLater: {
                    AdminServer.scrapeReply(source, gzip: acceptsGzip) { error in
                        RenderedReply(status: error.status, body: Data("\(error.detail)\n".utf8), contentType: "text/plain; charset=utf-8")
                    }
                })
            } catch {
                return Reply(status: error.status, body: Data("\(error.detail)\n".utf8))
            }
        case "/ready":
            switch control.observed.phase {
            case .serving: return Reply(status: 200, body: Data("ready\n".utf8))
            case .starting: return Reply(status: 503, body: Data("starting\n".utf8))
            case .draining: return Reply(status: 503, body: Data("draining\n".utf8))
            }
        default:
            return Reply(status: 200, body: Data("live\n".utf8))
        }
    }

    fileprivate func handle(_ req: OpaquePointer) {
        var answer: Reply
        if admit(req) {
            let uri = String(cString: evhttp_request_get_uri(req))
            let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            let path = String(parts.first ?? "")
            let query = parts.count > 1 ? AdminServer.queryParameters(parts[1]) : [:]
            let acceptEncoding = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept-Encoding").map { String(cString: $0) }
            answer = reply(method: evhttp_request_get_command(req), path: path, query: query,
                           acceptsGzip: AcceptEncoding.allowsGzip(acceptEncoding))
        } else {
            answer = Reply(status: 503, body: Data("too many connections: the observability listener serves at most \(Self.maxConnections) at once\n".utf8),
                           headers: [("Retry-After", "1")])
        }
        if let work = answer.writtenLater {
            if let replies, replies.submit(req, work) { return }
            answer = Self.busy
        }
        send(answer, to: req)
    }

    /// Sends `answer` to `req` (on the control thread).
    private func send(_ answer: Reply, to req: OpaquePointer) {
        let headers = evhttp_request_get_output_headers(req)
        if answer.status == 503 { evhttp_add_header(headers, "Connection", "close") }
        evhttp_add_header(headers, "Content-Type", answer.contentType)
        evhttp_add_header(headers, "Cache-Control", "no-store")
        if let allow = answer.allow { evhttp_add_header(headers, "Allow", allow) }
        for field in answer.headers { evhttp_add_header(headers, field.name, field.value) }
        let buffer = evbuffer_new()
        answer.body.withUnsafeBytes { _ = evbuffer_add(buffer, $0.baseAddress, $0.count) }
        evhttp_send_reply(req, Int32(answer.status), HTTPStatusText.reason(answer.status), buffer)
        evbuffer_free(buffer)
    }

    /// Counts connections as they send their first request; past the limit, the request is
    /// answered 503 and the connection closed.
    private func admit(_ req: OpaquePointer) -> Bool {
        guard let connection = evhttp_request_get_connection(req), !connections.contains(connection) else { return true }
        guard connections.count < Self.maxConnections else { return false }
        connections.insert(connection)
        evhttp_connection_set_closecb(connection, observabilityConnectionClosedCallback, Unmanaged.passUnretained(self).toOpaque())
        return true
    }

    fileprivate func connectionClosed(_ connection: OpaquePointer) { connections.remove(connection) }
}

private let observabilityRequestCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { req, context in
    guard let req, let context else { return }
    Unmanaged<ObservabilityServer>.fromOpaque(context).takeUnretainedValue().handle(req)
}

private let observabilityConnectionClosedCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { connection, context in
    guard let connection, let context else { return }
    Unmanaged<ObservabilityServer>.fromOpaque(context).takeUnretainedValue().connectionClosed(connection)
}
