import Foundation
import Glibc
import Testing

// MARK: - A raw HTTP client over a plain socket

struct RawResponse {
    var status: Int
    var head: String
    var headers: [(String, String)]
    var body: [UInt8]
    var bodyText: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

final class RawClient {
    let fd: Int32
    var buffer: [UInt8] = []

    init(port: UInt16, timeout: Double = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw HarnessError("connect to \(port) failed: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads more bytes; false at end of stream, error or timeout.
    @discardableResult
    func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// True when the server has closed the connection (reads end of stream within `timeout`).
    func isClosedByPeer(timeout: Double = 5) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
            buffer += chunk[0..<n]
        }
        return false
    }

    func readLine() -> String? {
        while true {
            if let i = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<i], as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
                buffer.removeSubrange(...i)
                return line
            }
            if !fill() { return nil }
        }
    }

    /// Reads one response (skipping 1xx unless `stopAtInformational`).
    func readResponse(method: String = "GET", stopAtInformational: Bool = false) throws -> RawResponse {
        while true {
            guard let statusLine = readLine() else { throw HarnessError("connection closed before a response") }
            let parts = statusLine.split(separator: " ")
            guard parts.count >= 2, let status = Int(parts[1]) else { throw HarnessError("bad status line: \(statusLine)") }
            var headers: [(String, String)] = []
            var head = statusLine + "\r\n"
            while let line = readLine(), !line.isEmpty {
                head += line + "\r\n"
                if let colon = line.firstIndex(of: ":") {
                    headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
                }
            }
            var response = RawResponse(status: status, head: head, headers: headers, body: [])
            if status < 200 { if stopAtInformational || status == 101 { return response } else { continue } }
            if method == "HEAD" || status == 204 || status == 304 { return response }
            if let te = response.header("Transfer-Encoding"), te.lowercased().contains("chunked") {
                while true {
                    guard let sizeLine = readLine(), let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else {
                        throw HarnessError("bad chunk size")
                    }
                    if size == 0 { while let t = readLine(), !t.isEmpty {}; break }
                    while buffer.count < size + 2 { if !fill() { throw HarnessError("truncated chunk") } }
                    response.body += buffer[0..<size]
                    buffer.removeSubrange(0..<(size + 2))
                }
            } else if let cl = response.header("Content-Length").flatMap({ Int($0) }) {
                while buffer.count < cl { if !fill() { throw HarnessError("truncated body: \(buffer.count) of \(cl)") } }
                response.body = Array(buffer[0..<cl])
                buffer.removeSubrange(0..<cl)
            } else {
                while fill() {}
                response.body = buffer
                buffer.removeAll()
            }
            return response
        }
    }
}
