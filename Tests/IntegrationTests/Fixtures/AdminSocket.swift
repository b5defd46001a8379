import Foundation
import Glibc
import Testing

/// The admin API over its Unix socket, one request per connection, from any thread (no
/// process is spawned, so parallel callers really run in parallel).
struct AdminSocket: Sendable {
    let path: String

    /// Sends one request; returns the HTTP status and the JSON body (empty when not an object).
    @discardableResult
    func call(_ method: String, _ target: String, body: String? = nil, token: String? = nil,
              actor: String? = nil) throws -> (status: Int, json: [String: Any]) {
        let fd = try Self.connect(path)
        defer { close(fd) }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let payload = body ?? ""
        var head = "\(method) \(target) HTTP/1.1\r\nHost: switchyard\r\nConnection: close\r\nContent-Length: \(payload.utf8.count)\r\n"
        if let token { head += "X-Switchyard-Lock: \(token)\r\n" }
        if let actor { head += "X-Switchyard-Actor: \(actor)\r\n" }
        let request = Array((head + "\r\n" + payload).utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw HarnessError("send to \(path): \(String(cString: strerror(errno)))") }
            sent += n
        }
        var response = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += chunk[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw HarnessError("\(method) \(target): no response head in \(text.prefix(200))") }
        let status = Int(text[..<split.lowerBound].split(separator: " ").dropFirst().first ?? "") ?? 0
        var content = String(text[split.upperBound...])
        // evhttp may answer in chunks: take the JSON object out of the framing.
        if let open = content.firstIndex(of: "{"), let close = content.lastIndex(of: "}") { content = String(content[open...close]) }
        let json = (try? JSONSerialization.jsonObject(with: Data(content.utf8))) as? [String: Any] ?? [:]
        return (status, json)
    }

    /// A new connection to the socket at `path`; the caller closes it.
    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes); $0[bytes.count] = 0 }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw HarnessError("connect \(path): \(reason)")
        }
        return fd
    }

    /// The `detail` of an error answer.
    static func detail(_ answer: (status: Int, json: [String: Any])) -> String { answer.json["detail"] as? String ?? "" }
}
