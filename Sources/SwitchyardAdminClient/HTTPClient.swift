import COpenSSL
import Foundation
import Glibc

/// An http:// or https:// URL split into what a request needs.
public struct HTTPURL: Sendable {
    public var tls: Bool
    public var host: String
    public var port: UInt16
    public var path: String

    public init?(_ text: String) {
        let tls: Bool
        var rest: Substring
        if text.hasPrefix("https://") { tls = true; rest = text.dropFirst(8) }
        else if text.hasPrefix("http://") { tls = false; rest = text.dropFirst(7) }
        else { return nil }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        rest = authority
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let p = UInt16(rest[rest.index(after: colon)...]), p > 0 else { return nil }
            port = p
            rest = rest[..<colon]
        } else {
            port = tls ? 443 : 80
        }
        host = String(rest).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        self.tls = tls
        if host.isEmpty || host.contains("@") || path.contains(" ") { return nil }
    }
}

/// What went wrong talking to a server, in words for the operator.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A response: status, lower-cased headers and the (de-chunked) body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data
    public var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
}

/// A small blocking HTTP/1.1 client (one request per connection) over a Unix socket or TCP,
/// with TLS through OpenSSL that verifies the server's certificate and name. It carries the
/// admin API for `switchyard ctl` and the orchestrator, and the orchestrator's webhooks. Both
/// run as one foreground process, so blocking calls with deadlines are the simple, honest choice.
public enum HTTPClient {
    public enum Target: Sendable {
        case unix(String)
        /// `serverName`: the name to send (SNI) and verify, when it differs from `host`
        /// (an address, or a name the resolver does not know).
        case tcp(host: String, port: UInt16, tls: Bool, ca: String?, serverName: String? = nil)
    }

    public static func send(to target: Target, method: String, path: String, headers: [(String, String)] = [],
                            body: Data? = nil, timeout: Double = 10) throws(ClientError) -> HTTPResponse {
        var head = "\(method) \(path) HTTP/1.1\r\n"
        var hostHeader = "switchyard"
        if case .tcp(let host, let port, let tls, _, let serverName) = target {
            let name = serverName ?? host
            hostHeader = name.contains(":") ? "[\(name)]" : name
            if port != (tls ? 443 : 80) { hostHeader += ":\(port)" }
        }
        head += "Host: \(hostHeader)\r\nConnection: close\r\nUser-Agent: switchyard-deploy\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" } else if method != "GET" { head += "Content-Length: 0\r\n" }
        head += "\r\n"
        let request = Data(head.utf8) + (body ?? Data())
        let deadline = Date().addingTimeInterval(timeout)
        let connection = try Connection.open(target, deadline: deadline)
        defer { connection.close() }
        try connection.write(request)
        let raw = try connection.readAll(limit: 64 << 20)
        return try parse(raw)
    }

    static func parse(_ raw: Data) throws(ClientError) -> HTTPResponse {
        guard let end = raw.range(of: Data("\r\n\r\n".utf8)) else { throw ClientError("the server closed the connection without a complete response") }
        let lines = String(decoding: raw[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = (lines.first ?? "").split(separator: " ")
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw ClientError("not an HTTP response")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(raw[end.upperBound...])
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true { body = dechunk(body) }
        else if let length = headers["content-length"].flatMap(Int.init), length < body.count { body = body.prefix(length) }
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    static func dechunk(_ data: Data) -> Data {
        var out = Data()
        var rest = data[...]
        while let lineEnd = rest.range(of: Data("\r\n".utf8)) {
            let sizeText = String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = lineEnd.upperBound
            // Compared without adding: a size near Int.max from the peer must not overflow.
            guard size <= rest.endIndex - start else { out.append(rest[start...]); break }
            out.append(rest[start..<start + size])
            guard size + 2 <= rest.endIndex - start else { break }
            rest = rest[(start + size + 2)...]
        }
        return out
    }

    /// One connection, plain or TLS.
    final class Connection {
        let fd: Int32
        var ssl: OpaquePointer?
        var context: OpaquePointer?
        let deadline: Date

        init(fd: Int32, deadline: Date) { self.fd = fd; self.deadline = deadline }

        static func open(_ target: Target, deadline: Date) throws(ClientError) -> Connection {
            switch target {
            case .unix(let path):
                let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                var address = sockaddr_un()
                address.sun_family = sa_family_t(AF_UNIX)
                let bytes = Array(path.utf8)
                guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { Glibc.close(fd); throw ClientError("socket path too long: \(path)") }
                withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes); $0[bytes.count] = 0 }
                let rc = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
                guard rc == 0 else {
                    let reason = String(cString: strerror(errno))
                    Glibc.close(fd)
                    throw ClientError("cannot connect to \(path): \(reason)")
                }
                let c = Connection(fd: fd, deadline: deadline)
                c.applyTimeout()
                return c
            case .tcp(let host, let port, let tls, let ca, let serverName):
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                var list: UnsafeMutablePointer<addrinfo>?
                let gai = getaddrinfo(host, String(port), &hints, &list)
                guard gai == 0, let first = list else { throw ClientError("cannot resolve \(host): \(String(cString: gai_strerror(gai)))") }
                defer { freeaddrinfo(list) }
                var lastError = "no address"
                var entry: UnsafeMutablePointer<addrinfo>? = first
                while let ai = entry {
                    entry = ai.pointee.ai_next
                    let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
                    guard fd >= 0 else { continue }
                    let c = Connection(fd: fd, deadline: deadline)
                    c.applyTimeout()
                    if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 {
                        lastError = String(cString: strerror(errno))
                        Glibc.close(fd)
                        continue
                    }
                    if tls { try c.startTLS(host: serverName ?? host, ca: ca) }
                    return c
                }
                throw ClientError("cannot connect to \(host):\(port): \(lastError)")
            }
        }

        func applyTimeout() {
            let seconds = max(0.05, deadline.timeIntervalSinceNow)
            var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }

        func startTLS(host: String, ca: String?) throws(ClientError) {
            context = SSL_CTX_new(TLS_client_method())
            guard let context else { throw ClientError("TLS: cannot create a context") }
            _ = sy_ssl_ctx_set_min_proto_version(context, sy_tls1_2())
            if let ca {
                guard SSL_CTX_load_verify_locations(context, ca, nil) == 1 else { throw ClientError("TLS: cannot read the CA file \(ca)") }
            } else {
                SSL_CTX_set_default_verify_paths(context)
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            ssl = SSL_new(context)
            SSL_set_fd(ssl, fd)
            // An address is verified against the certificate's IP names; a name is also sent as SNI.
            var probe = in6_addr()
            if inet_pton(AF_INET, host, &probe) == 1 || inet_pton(AF_INET6, host, &probe) == 1 {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
            } else {
                _ = sy_ssl_set_sni(ssl, host)
                SSL_set1_host(ssl, host)
            }
            guard SSL_connect(ssl) == 1 else {
                let verify = SSL_get_verify_result(ssl)
                let reason = verify != X509_V_OK ? String(cString: X509_verify_cert_error_string(verify)) : Self.lastError()
                throw ClientError("TLS handshake with \(host) failed: \(reason)\(ca == nil ? "; give the CA bundle that signed its certificate (ca:)" : "")")
            }
        }

        static func lastError() -> String {
            let code = ERR_get_error()
            if code == 0 { return "the connection closed or timed out" }
            var buffer = [UInt8](repeating: 0, count: 256)
            buffer.withUnsafeMutableBufferPointer { bytes in
                bytes.baseAddress?.withMemoryRebound(to: CChar.self, capacity: 256) { ERR_error_string_n(code, $0, 255) }
            }
            return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
        }

        func write(_ data: Data) throws(ClientError) {
            var offset = 0
            let bytes = [UInt8](data)
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { raw -> Int in
                    guard let base = raw.baseAddress else { return 0 }
                    let p = base + offset
                    if let ssl { return Int(SSL_write(ssl, p, Int32(bytes.count - offset))) }
                    return Glibc.send(fd, p, bytes.count - offset, Int32(MSG_NOSIGNAL))
                }
                if n <= 0 {
                    if ssl == nil && errno == EINTR { continue }
                    throw ClientError("the connection failed while sending: \(ssl != nil ? Self.lastError() : String(cString: strerror(errno)))")
                }
                offset += n
            }
        }

        func readAll(limit: Int) throws(ClientError) -> Data {
            var out = Data()
            var chunk = [UInt8](repeating: 0, count: 65536)
            while out.count < limit {
                if deadline.timeIntervalSinceNow <= 0 { throw ClientError("no complete answer before the deadline") }
                let n = chunk.withUnsafeMutableBytes { raw -> Int in
                    if let ssl { return Int(SSL_read(ssl, raw.baseAddress, Int32(raw.count))) }
                    return recv(fd, raw.baseAddress, raw.count, 0)
                }
                if n > 0 { out.append(contentsOf: chunk[0..<n]); continue }
                if n < 0 && ssl == nil && errno == EINTR { continue }
                if n < 0 && ssl == nil && (errno == EAGAIN || errno == EWOULDBLOCK) { throw ClientError("no answer before the deadline") }
                break
            }
            return out
        }

        /// What the peer sent next (at most `limit` bytes); empty when it closed the connection.
        func readSome(limit: Int = 16384) throws(ClientError) -> Data {
            var chunk = [UInt8](repeating: 0, count: max(1, limit))
            while true {
                if deadline.timeIntervalSinceNow <= 0 { throw ClientError("no answer before the deadline") }
                let n = chunk.withUnsafeMutableBytes { raw -> Int in
                    if let ssl { return Int(SSL_read(ssl, raw.baseAddress, Int32(raw.count))) }
                    return recv(fd, raw.baseAddress, raw.count, 0)
                }
                if n > 0 { return Data(chunk[0..<n]) }
                if n < 0 && ssl == nil && errno == EINTR { continue }
                if n < 0 && ssl == nil && (errno == EAGAIN || errno == EWOULDBLOCK) { throw ClientError("no answer before the deadline") }
                return Data()
            }
        }

        func close() {
            if let ssl { SSL_shutdown(ssl); SSL_free(ssl) }
            if let context { SSL_CTX_free(context) }
            Glibc.close(fd)
        }
    }
}
