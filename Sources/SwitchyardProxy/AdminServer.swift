import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardRouting

/// The admin API: HTTP/1.1 and JSON on a Unix domain socket (mode 0600), served by
/// libevent's evhttp on the control thread. Workers are never blocked by it: a change is
/// published as a new snapshot and acknowledged by each worker between its events.
/// The reference is docs/admin-api.md; the OpenAPI document is docs/openapi.yaml.
final class AdminServer {
    let control: ControlPlane
    let socketPath: String?
    /// Bearer tokens accepted on the TCP listener, by name.
    let tokens: [(name: String, token: [UInt8])]
    private var http: OpaquePointer?
    /// The TCP listener has its own evhttp, so that TLS applies to it and not to the Unix socket.
    private var tcpHTTP: OpaquePointer?
    private var tcpTLS: TLSServerContext?
    private let startTime = Date()

    /// The socket file's inode, so that a process that was taken over does not remove its successor's.
    private var socketInode: ino_t = 0

    /// - Parameter replace: take over the socket path from a running process (binary upgrade).
    init(control: ControlPlane, base: OpaquePointer, config: AdminConfig, replace: Bool = false) throws {
        self.control = control
        socketPath = config.socket
        tokens = config.tokens.sorted { $0.key < $1.key }.map { ($0.key, Array($0.value.utf8)) }
        guard let http = evhttp_new(base) else { throw ProxyError("evhttp_new failed") }
        self.http = http
        // Every method reaches the handler, so that unsupported ones get a JSON 405, not evhttp's HTML 501.
        evhttp_set_allowed_methods(http, UInt16.max)
        evhttp_set_max_body_size(http, 1 << 20)
        if let socketPath {
            if replace { unlink(socketPath) }
            let fd = try Self.listenUnix(path: socketPath)
            socketInode = Self.inode(socketPath)
            guard evhttp_accept_socket(http, fd) == 0 else { throw ProxyError("cannot serve the admin socket \(socketPath)") }
        }
        evhttp_set_gencb(http, adminRequestCallback, Unmanaged.passUnretained(self).toOpaque())
        if let tcp = config.tcp {
            guard let tcpHTTP = evhttp_new(base) else { throw ProxyError("evhttp_new failed") }
            self.tcpHTTP = tcpHTTP
            evhttp_set_allowed_methods(tcpHTTP, UInt16.max)
            evhttp_set_max_body_size(tcpHTTP, 1 << 20)
            if let tls = config.tls {
                tcpTLS = try TLSServerContext(config: tls, listener: "admin", requireClientCertificate: false)
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
    }

    struct Reply {
        var status: Int
        var body: Data
        var contentType = "application/json"
    }

    fileprivate func handle(_ req: OpaquePointer) {
        let reply: Reply
        do throws(AdminError) {
            reply = try route(try parse(req))
        } catch {
            reply = Self.error(error)
        }
        let headers = evhttp_request_get_output_headers(req)
        evhttp_add_header(headers, "Content-Type", reply.contentType)
        if reply.status == 401 { evhttp_add_header(headers, "WWW-Authenticate", "Bearer realm=\"switchyard\"") }
        if reply.status == 405 {
            let path = String(cString: evhttp_request_get_uri(req)).split(separator: "?").first ?? ""
            evhttp_add_header(headers, "Allow", Self.methods(for: path.split(separator: "/")).joined(separator: ", "))
        }
        let buffer = evbuffer_new()
        reply.body.withUnsafeBytes { _ = evbuffer_add(buffer, $0.baseAddress, $0.count) }
        evhttp_send_reply(req, Int32(reply.status), HTTPStatusText.reason(reply.status), buffer)
        evbuffer_free(buffer)
    }

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
        let uri = String(cString: evhttp_request_get_uri(req))
        let parts = uri.split(separator: "?", maxSplits: 1)
        let path = (parts.first ?? "").split(separator: "/")
        var query: [String: String] = [:]
        if parts.count > 1 {
            for item in parts[1].split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let key = kv.first, !key.isEmpty else { continue }
                query[String(key)] = kv.count > 1 ? String(kv[1]).removingPercentEncoding ?? String(kv[1]) : "true"
            }
        }
        var body: [String: Any] = [:]
        let input = evhttp_request_get_input_buffer(req)
        let length = evbuffer_get_length(input)
        if length > 0 {
            let data = Data(bytes: evbuffer_pullup(input, -1), count: length)
            guard let object = try? JSONSerialization.jsonObject(with: data), let dict = object as? [String: Any] else {
                throw AdminError(400, "invalid JSON", "the body must be a JSON object")
            }
            body = dict
        }
        let headers = evhttp_request_get_input_headers(req)
        func header(_ name: String) -> String? { evhttp_find_header(headers, name).map { String(cString: $0) } }
        var ifMatch: UInt64? = nil
        if let text = header("If-Match") {
            guard let value = UInt64(text.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))) else {
                throw AdminError(400, "invalid If-Match", "If-Match must be a state generation number from /v1/status")
            }
            ifMatch = value
        }
        let user: String
        if let fd = Self.socketFD(req), Self.isUnixSocket(fd) {
            user = Self.peerUser(fd)
        } else {
            // TCP: a verified client certificate, or a known bearer token; its name is the actor.
            if let name = Self.clientCertificateName(req) {
                user = "cert:\(name)"
            } else if let name = tokenName(header("Authorization")) {
                user = "token:\(name)"
            } else {
                throw AdminError(401, "unauthorized", "the TCP admin listener needs Authorization: Bearer TOKEN (admin.tokens_file) or a client certificate signed by admin.tls.client_ca")
            }
        }
        return Request(method: method, path: path, query: query, body: body, ifMatch: ifMatch,
                       lockToken: header("X-Switchyard-Lock"), actor: Actor(user: user, label: header("X-Switchyard-Actor")))
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

    private func route(_ r: Request) throws(AdminError) -> Reply {
        let p = r.path
        switch (r.method, p.count) {
        case ("GET", 2) where p == ["v1", "status"]:
            return Self.ok(status())
        case ("GET", 2) where p == ["v1", "audit"]:
            var limit = 100
            if let text = r.query["limit"] {
                guard let value = Int(text), (0...ControlPlane.auditMemoryLimit).contains(value) else {
                    throw AdminError(400, "invalid limit", "limit is a whole number from 0 to \(ControlPlane.auditMemoryLimit)")
                }
                limit = value
            }
            return Self.ok(["entries": Array(control.audit.suffix(limit))])
        case ("GET", 1) where p == ["metrics"]:
            return Reply(status: 200, body: Data(metrics().utf8), contentType: "text/plain; version=0.0.4")
        case ("POST", 4) where p[0] == "v1" && p[1] == "services" && p[3] == "flip":
            let to = r.body["to"] as? String
            return try changed(control.flip(service: String(p[2]), to: to, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case ("PUT", 4) where p[0] == "v1" && p[1] == "services" && p[3] == "canary":
            // Syntax first (400), then what depends on the state (404/409).
            let weight = try Self.weight(r.body["weight"])
            let sticky = try Self.sticky(r.body)
            let guardrail = try Self.guardrail(r.body)
            let pool = r.body["pool"] as? String ?? control.state.services[String(p[2])]?.canary?.pool ?? ""
            if weight > 0 && pool.isEmpty {
                // Whether pool may be left out depends on the state (an existing canary): a conflict, not bad syntax.
                throw AdminError(409, "no canary pool", "service \(p[2]) has no canary pool yet; give it: {\"pool\": \"green\", \"weight\": \"5%\"}")
            }
            return try changed(control.setCanary(service: String(p[2]), pool: pool, weight: weight, sticky: sticky, guardrail: guardrail,
                                                 actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case ("PUT", 4) where p[0] == "v1" && p[1] == "services" && p[3] == "rules":
            let rules = try Self.rules(r.body["rules"])
            return try changed(control.setRules(service: String(p[2]), rules: rules, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case ("POST", 4) where p[0] == "v1" && p[1] == "services" && p[3] == "rollback":
            return try changed(control.rollback(service: String(p[2]), actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case ("PUT", 5) where p[0] == "v1" && p[1] == "pools" && p[3] == "servers":
            var weight: Int? = nil
            if let w = r.body["weight"] {
                guard let n = w as? Int else { throw AdminError(400, "invalid weight", "weight must be a whole number from 0 to 1000") }
                weight = n
            }
            var state: ServerState? = nil
            if let s = r.body["state"] {
                guard let text = s as? String, let value = ServerState(rawValue: text) else {
                    throw AdminError(400, "invalid state", "state must be ready, drain or maint")
                }
                state = value
            }
            if weight == nil && state == nil { throw AdminError(400, "nothing to change", "give weight and/or state") }
            return try changed(control.setServer(pool: String(p[2]), server: String(p[4]), weight: weight, serverState: state,
                                                 actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case ("POST", 4) where p[0] == "v1" && p[1] == "pools" && p[3] == "servers":
            guard let name = r.body["name"] as? String, let address = r.body["address"] as? String else {
                throw AdminError(400, "missing fields", "give name and address: {\"name\": \"b3\", \"address\": \"10.0.0.3:8000\", \"weight\": 100}")
            }
            var state = ServerState.ready
            if let s = r.body["state"] {
                guard let text = s as? String, let value = ServerState(rawValue: text) else {
                    throw AdminError(400, "invalid state", "state must be ready, drain or maint")
                }
                state = value
            }
            let weight = r.body["weight"] as? Int ?? 100
            return try changed(control.addServer(pool: String(p[2]), name: name, address: address, weight: weight, serverState: state,
                                                 actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case ("DELETE", 5) where p[0] == "v1" && p[1] == "pools" && p[3] == "servers":
            return try changed(control.removeServer(pool: String(p[2]), name: String(p[4]), actor: r.actor,
                                                    ifMatch: r.ifMatch, lockToken: r.lockToken))
        case ("POST", 2) where p == ["v1", "reload"]:
            try control.checkLockFor(r.lockToken)
            let (generation, notes) = try control.reload(reset: r.query["reset"] == "true", actor: r.actor)
            return Self.ok(["generation": generation, "notes": notes, "acknowledged_us": control.publishLatencies.last ?? 0])
        case ("POST", 2) where p == ["v1", "lock"]:
            guard let owner = r.body["owner"] as? String, !owner.isEmpty else {
                throw AdminError(400, "missing owner", "give the owner: {\"owner\": \"deploy-42\", \"ttl\": \"10m\", \"reason\": \"...\"}")
            }
            let ttlText = r.body["ttl"] as? String ?? "10m"
            guard let ttl = DurationText.parse(ttlText), ttl.milliseconds > 0 else {
                throw AdminError(400, "invalid ttl", "ttl is a duration such as 30s, 10m or 1h")
            }
            let info = try control.acquireLock(owner: owner, reason: r.body["reason"] as? String ?? "", ttl: ttl,
                                               actor: r.actor, token: r.lockToken)
            return Self.ok(Self.lockJSON(info, withToken: true))
        case ("DELETE", 2) where p == ["v1", "lock"]:
            try control.releaseLock(token: r.lockToken, force: r.query["force"] == "true", actor: r.actor)
            return Self.ok(["unlocked": true])
        default:
            let allowed = Self.methods(for: p)
            if !allowed.isEmpty {
                throw AdminError(405, "method not allowed", "/\(p.joined(separator: "/")) takes \(allowed.joined(separator: ", "))")
            }
            throw AdminError(404, "no such endpoint", "\(r.method) /\(p.joined(separator: "/")) is not part of the admin API; see docs/admin-api.md")
        }
    }

    /// The methods a known path takes (empty for an unknown path).
    static func methods(for p: [Substring]) -> [String] {
        switch p.count {
        case 1 where p == ["metrics"]: return ["GET"]
        case 2 where p == ["v1", "status"] || p == ["v1", "audit"]: return ["GET"]
        case 2 where p == ["v1", "lock"]: return ["POST", "DELETE"]
        case 2 where p == ["v1", "reload"]: return ["POST"]
        case 4 where p[0] == "v1" && p[1] == "services":
            switch p[3] {
            case "flip", "rollback": return ["POST"]
            case "canary", "rules": return ["PUT"]
            default: return []
            }
        case 4 where p[0] == "v1" && p[1] == "pools" && p[3] == "servers": return ["POST"]
        case 5 where p[0] == "v1" && p[1] == "pools" && p[3] == "servers": return ["PUT", "DELETE"]
        default: return []
        }
    }

    private func changed(_ generation: UInt64) -> Reply {
        Self.ok(["generation": generation, "acknowledged_us": control.publishLatencies.last ?? 0])
    }

    // MARK: Status and metrics

    /// The counters of one server or service, read from a merged array.
    struct Counters {
        let values: ArraySlice<Int>
        init(_ array: [Int], index: Int) {
            let base = index * ServerStats.stride
            values = base + ServerStats.stride <= array.count ? array[base..<base + ServerStats.stride] : ArraySlice(repeating: 0, count: ServerStats.stride)
        }
        init(sum: [Counters]) {
            var total = [Int](repeating: 0, count: ServerStats.stride)
            for c in sum { for (i, v) in c.values.enumerated() { total[i] &+= v } }
            values = total[...]
        }
        subscript(_ field: Int) -> Int { values[values.startIndex + field] }

        var json: [String: Any] {
            ["active_requests": self[ServerStats.active], "requests": self[ServerStats.requests],
             "responses": ["1xx": self[3], "2xx": self[4], "3xx": self[5], "4xx": self[6], "5xx": self[7]],
             "failures": self[ServerStats.failures]]
        }

        /// Prometheus sample lines for these counters, by metric family suffix.
        func samples(_ labels: String, connections: Bool) -> [(family: String, lines: String)] {
            var responses = ""
            for (i, cls) in ["1xx", "2xx", "3xx", "4xx", "5xx"].enumerated() {
                responses += "{\(labels),class=\"\(cls)\"} \(self[ServerStats.statusClass + i])\n"
            }
            var histogram = ""
            var cumulative = 0
            for (i, bound) in ServerStats.bucketBounds.enumerated() {
                cumulative += self[ServerStats.latencyBuckets + i]
                histogram += "_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
            }
            cumulative += self[ServerStats.latencyBuckets + ServerStats.bucketBounds.count]
            histogram += "_bucket{\(labels),le=\"+Inf\"} \(cumulative)\n"
            histogram += "_sum{\(labels)} \(Double(self[ServerStats.latencySumMicros]) / 1_000_000)\n"
            histogram += "_count{\(labels)} \(cumulative)\n"
            var result: [(String, String)] = [
                ("_responses_total", responses),
                ("_failures_total", "{\(labels)} \(self[ServerStats.failures])\n"),
                ("_active_requests", "{\(labels)} \(self[ServerStats.active])\n"),
                ("_request_duration_seconds", histogram),
            ]
            if connections {
                result.append(("_open_connections", "{\(labels)} \(self[ServerStats.openConnections])\n"))
                result.append(("_ejections_total", "{\(labels)} \(self[ServerStats.ejections])\n"))
            }
            return result
        }
    }

    func status() -> [String: Any] {
        let stats = control.collectStats()
        let snapshot = control.snapshot()
        var services: [String: Any] = [:]
        for route in snapshot.services {
            var s = control.state.services[route.name].map(ControlPlane.json) ?? [:]
            s["traffic"] = Counters(stats.services, index: route.statsID).json
            s["guard_trip"] = control.guardTrips[route.name] ?? NSNull()
            services[route.name] = s
        }
        var pools: [String: Any] = [:]
        for pool in snapshot.pools {
            pools[pool.name] = [
                "balance": pool.balance.rawValue,
                "servers": pool.servers.map { server -> [String: Any] in
                    let c = Counters(stats.servers, index: server.id)
                    var out = c.json
                    out["name"] = server.name
                    out["address"] = server.address.description
                    out["weight"] = server.configuredWeight
                    out["effective_weight"] = server.weight
                    out["state"] = server.state.rawValue
                    out["open_connections"] = c[ServerStats.openConnections]
                    out["ejections"] = c[ServerStats.ejections]
                    out["ejected_in_workers"] = c[ServerStats.ejectedNow]
                    out["health"] = control.health?.json(pool: pool.name, server: server.name) ?? ["status": "not checked"]
                    return out
                },
            ]
        }
        let latencies = control.publishLatencies.sorted()
        func percentile(_ q: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))] }
        return [
            "generation": control.state.generation,
            "services": services,
            "pools": pools,
            "lock": control.activeLock.map { Self.lockJSON($0, withToken: false) } ?? NSNull(),
            "workers": control.workers.count,
            "uptime_seconds": Int(Date().timeIntervalSince(startTime)),
            "publish_ack_us": ["p50": percentile(0.5), "p99": percentile(0.99), "count": latencies.count],
        ]
    }

    /// Prometheus text: per service, per pool (the sum of its servers) and per server, each
    /// with responses by class, failures, active requests and a latency histogram.
    func metrics() -> String {
        let stats = control.collectStats()
        let snapshot = control.snapshot()
        var out = "# HELP switchyard_generation Runtime state generation.\n# TYPE switchyard_generation gauge\n"
        out += "switchyard_generation \(control.state.generation)\n"
        out += "# HELP switchyard_tls_handshake_failures_total TLS handshakes that failed or timed out.\n# TYPE switchyard_tls_handshake_failures_total counter\n"
        out += "switchyard_tls_handshake_failures_total \(stats.tlsHandshakeFailures)\n"
        out += "# HELP switchyard_accept_errors_total Accepts that failed for want of descriptors or memory (each pauses accepting for 100 ms).\n# TYPE switchyard_accept_errors_total counter\n"
        out += "switchyard_accept_errors_total \(stats.acceptErrors)\n"
        out += "# HELP switchyard_canary_weight_ratio Canary share of each service (0 to 1).\n# TYPE switchyard_canary_weight_ratio gauge\n"
        for route in snapshot.services {
            out += "switchyard_canary_weight_ratio{service=\"\(route.name)\"} \(Double(route.canaryPool == nil ? 0 : route.canaryWeight) / 10000)\n"
        }
        out += "# HELP switchyard_canary_guard_trips_total Times the canary guard removed a failing canary.\n# TYPE switchyard_canary_guard_trips_total counter\n"
        for route in snapshot.services {
            out += "switchyard_canary_guard_trips_total{service=\"\(route.name)\"} \(control.guardTripCounts[route.name] ?? 0)\n"
        }
        let families: [(suffix: String, type: String, help: String)] = [
            ("_responses_total", "counter", "Responses by status class"),
            ("_failures_total", "counter", "Exchanges that ended without a response"),
            ("_active_requests", "gauge", "Requests in flight"),
            ("_request_duration_seconds", "histogram", "Time from request head to last response byte"),
            ("_open_connections", "gauge", "Open upstream connections"),
            ("_ejections_total", "counter", "Ejections by passive outlier detection"),
        ]
        for (prefix, what) in [("switchyard_service", "service"), ("switchyard_pool", "pool"), ("switchyard_upstream", "upstream server")] {
            var entities: [(labels: String, counters: Counters)] = []
            switch what {
            case "service":
                for route in snapshot.services {
                    entities.append(("service=\"\(route.name)\"", Counters(stats.services, index: route.statsID)))
                }
            case "pool":
                for pool in snapshot.pools {
                    entities.append(("pool=\"\(pool.name)\"", Counters(sum: pool.servers.map { Counters(stats.servers, index: $0.id) })))
                }
            default:
                for pool in snapshot.pools {
                    for server in pool.servers {
                        entities.append(("pool=\"\(pool.name)\",server=\"\(server.name)\"", Counters(stats.servers, index: server.id)))
                    }
                }
            }
            let samples = entities.map { $0.counters.samples($0.labels, connections: what != "service") }
            // One group per metric family, as the exposition format requires.
            for family in families where what != "service" || (family.suffix != "_open_connections" && family.suffix != "_ejections_total") {
                out += "# HELP \(prefix)\(family.suffix) \(family.help), by \(what).\n# TYPE \(prefix)\(family.suffix) \(family.type)\n"
                for entity in samples {
                    guard let lines = entity.first(where: { $0.family == family.suffix })?.lines else { continue }
                    for line in lines.split(separator: "\n") { out += "\(prefix)\(family.suffix)\(line)\n" }
                }
            }
        }
        out += "# HELP switchyard_server_healthy Whether active health checks find each server up (1) or down/pending (0).\n# TYPE switchyard_server_healthy gauge\n"
        for pool in snapshot.pools {
            for server in pool.servers {
                out += "switchyard_server_healthy{pool=\"\(pool.name)\",server=\"\(server.name)\"} \(server.healthy ? 1 : 0)\n"
            }
        }
        out += "# HELP switchyard_server_effective_weight The weight balancing uses now (0 when drained or down; scaled by slow start and reported load).\n# TYPE switchyard_server_effective_weight gauge\n"
        for pool in snapshot.pools {
            for server in pool.servers {
                out += "switchyard_server_effective_weight{pool=\"\(pool.name)\",server=\"\(server.name)\"} \(server.weight)\n"
            }
        }
        var cpu = "# HELP switchyard_server_reported_cpu_ratio CPU use the instance reports in X-Switchyard-Load.\n# TYPE switchyard_server_reported_cpu_ratio gauge\n"
        var memory = "# HELP switchyard_server_reported_memory_ratio Memory use the instance reports in X-Switchyard-Load.\n# TYPE switchyard_server_reported_memory_ratio gauge\n"
        for entry in (control.health?.servers.values.sorted { $0.key < $1.key }) ?? [] {
            let labels = "pool=\"\(entry.pool)\",server=\"\(entry.server)\""
            if let v = entry.reportedCPU { cpu += "switchyard_server_reported_cpu_ratio{\(labels)} \(v)\n" }
            if let v = entry.reportedMemory { memory += "switchyard_server_reported_memory_ratio{\(labels)} \(v)\n" }
        }
        out += cpu + memory
        out += "# HELP switchyard_server_ready Whether each server takes new requests (1) or drains/is in maintenance (0).\n# TYPE switchyard_server_ready gauge\n"
        for pool in snapshot.pools {
            for server in pool.servers {
                out += "switchyard_server_ready{pool=\"\(pool.name)\",server=\"\(server.name)\"} \(server.state == .ready ? 1 : 0)\n"
            }
        }
        return out
    }

    // MARK: Helpers

    static func ok(_ object: Any) -> Reply {
        Reply(status: 200, body: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data())
    }

    static func error(_ e: AdminError) -> Reply {
        var reply = ok(["error": e.error, "detail": e.detail])
        reply.status = e.status
        return reply
    }

    static func lockJSON(_ lock: LockInfo, withToken: Bool) -> [String: Any] {
        var out: [String: Any] = ["owner": lock.owner, "reason": lock.reason,
                                  "since": ISO8601DateFormatter().string(from: lock.since),
                                  "expires": ISO8601DateFormatter().string(from: lock.expires)]
        if withToken { out["token"] = lock.token }
        return out
    }

    static func weight(_ value: Any?) throws(AdminError) -> Int {
        if let text = value as? String, let bp = BasisPoints.parse(text) { return bp }
        if let number = value as? NSNumber, !(value is Bool) {
            let bp = Int((number.doubleValue * 100).rounded())
            if (0...BasisPoints.whole).contains(bp) { return bp }
        }
        throw AdminError(400, "invalid weight", "weight is a percentage from 0% to 100% in 0.01% steps, e.g. \"5%\" or \"0.25%\"; 0 removes the canary")
    }

    /// `nil`: keep the current sticky setting; `.some(nil)`: none; otherwise the new key.
    static func sticky(_ body: [String: Any]) throws(AdminError) -> StickyKey?? {
        guard body.keys.contains("sticky") else { return nil }
        if body["sticky"] is NSNull { return .some(nil) }
        guard let s = body["sticky"] as? [String: Any], s.count == 1 else {
            throw AdminError(400, "invalid sticky", "sticky is {\"cookie\": NAME}, {\"header\": NAME}, {\"client_ip\": true} or null")
        }
        if let name = s["cookie"] as? String, !name.isEmpty { return .some(.cookie(name)) }
        if let name = s["header"] as? String, !name.isEmpty { return .some(.header(name)) }
        if s["client_ip"] as? Bool == true { return .some(.clientIP) }
        throw AdminError(400, "invalid sticky", "sticky is {\"cookie\": NAME}, {\"header\": NAME}, {\"client_ip\": true} or null")
    }

    /// `nil`: keep the current guard; `.some(nil)`: disarm; otherwise the new guard.
    static func guardrail(_ body: [String: Any]) throws(AdminError) -> CanaryGuard?? {
        guard body.keys.contains("guard") else { return nil }
        if body["guard"] is NSNull { return .some(nil) }
        let usage = "guard is {\"max_error_rate\": \"20%\", \"min_requests\": 20, \"window\": \"10s\"} or null"
        guard let g = body["guard"] as? [String: Any], Set(g.keys).isSubset(of: ["max_error_rate", "min_requests", "window"]) else {
            throw AdminError(400, "invalid guard", usage)
        }
        guard let rateText = g["max_error_rate"] as? String, let rate = BasisPoints.parse(rateText), rate > 0 else {
            throw AdminError(400, "invalid guard", "max_error_rate is a percentage above 0%; \(usage)")
        }
        var result = CanaryGuard(maxErrorRate: rate, minRequests: CanaryGuard.defaultMinRequests,
                                 windowMilliseconds: CanaryGuard.defaultWindowMilliseconds)
        if let m = g["min_requests"] {
            guard let n = m as? Int, n >= 1, !(m is Bool) else { throw AdminError(400, "invalid guard", "min_requests is a whole number of at least 1; \(usage)") }
            result.minRequests = n
        }
        if let w = g["window"] {
            guard let text = w as? String, let d = DurationText.parse(text), d.milliseconds >= 100 else {
                throw AdminError(400, "invalid guard", "window is a duration of at least 100ms such as 10s; \(usage)")
            }
            result.windowMilliseconds = d.milliseconds
        }
        return .some(result)
    }

    static func rules(_ value: Any?) throws(AdminError) -> [RouteRule] {
        guard let items = value as? [[String: Any]] else {
            throw AdminError(400, "invalid rules", "rules is a list of {\"header\"|\"cookie\": NAME, \"value\": V, \"pool\": P}")
        }
        var rules: [RouteRule] = []
        for item in items {
            guard let v = item["value"] as? String, let pool = item["pool"] as? String else {
                throw AdminError(400, "invalid rule", "each rule needs value and pool")
            }
            if let h = item["header"] as? String { rules.append(RouteRule(kind: .header, name: h, value: v, pool: pool)) }
            else if let c = item["cookie"] as? String { rules.append(RouteRule(kind: .cookie, name: c, value: v, pool: pool)) }
            else { throw AdminError(400, "invalid rule", "each rule needs header or cookie") }
        }
        return rules
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
        case 412: return "Precondition Failed"
        case 423: return "Locked"
        default: return status >= 500 ? "Internal Server Error" : "Error"
        }
    }
}

private let adminRequestCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { req, context in
    guard let req, let context else { return }
    Unmanaged<AdminServer>.fromOpaque(context).takeUnretainedValue().handle(req)
}

private let adminTLSBufferEventCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> OpaquePointer? = { base, context in
    guard let context else { return nil }
    return Unmanaged<AdminServer>.fromOpaque(context).takeUnretainedValue().tlsBufferEvent(base)
}
