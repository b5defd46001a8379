import Foundation
import Glibc
import SwitchyardHTTP

/// A small "whoami"-style upstream shipped for the demo and the integration tests.
///
/// Every answer names the instance (`X-Served-By` and the body). Paths that exercise the
/// proxy:
/// - `/` (anything else): `NAME METHOD PATH`
/// - `/headers`: the request head as received, as the body; `/conn`: which upstream connection this is
/// - `/echo`: the request body streamed back (Content-Length or chunked, as sent)
/// - `/bytes/N`, `/chunked/N`: N bytes with Content-Length, or chunked with a trailer
/// - `/status/N`: that status; `/sleep/MS`: answer after MS milliseconds; `/hang`: never answer
/// - `/close-mid`: promise 100000 bytes, send 1000 and close; `/close-delimited`: body ends at close
/// - `/upgrade`: with `Upgrade` and `Connection: upgrade`, 101 then echo raw bytes
/// - `/bad/both-lengths`, `/bad/bare-lf`, `/bad/two-lengths`: malformed responses
public final class DemoApp: @unchecked Sendable {
    let name: String
    let listenFD: Int32
    public let port: UInt16
    let requestLog: FileHandle?
    let logLock = NSLock()
    private var connectionCount = 0

    /// After this many requests on one connection, the next request is read and the
    /// connection closed without an answer: what a server closing an idle keep-alive
    /// connection looks like to a proxy that sent a request at that moment.
    let dropAfter: Int?
    /// Answer every request with this status (a failing instance, for tests and demos).
    let alwaysStatus: Int?
    /// Sent as `X-Switchyard-Load` on every response (e.g. "cpu=95%, memory=40%").
    public var load: String?
    /// Share of requests (0 to 1) answered 500, except `/health`: a bad release whose health
    /// check still passes, as bad releases usually do.
    public var errorShare: Double = 0
    /// Added before every answer except `/health`: a slow release.
    public var delayMilliseconds = 0

    public init(name: String, host: String, port: UInt16, requestLogPath: String?, dropAfter: Int? = nil,
                alwaysStatus: Int? = nil) throws {
        self.name = name
        self.dropAfter = dropAfter
        self.alwaysStatus = alwaysStatus
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 1024) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw DemoError("demo app \(name): cannot listen on \(host):\(port): \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = UInt16(bigEndian: addr.sin_port)
        listenFD = fd
        if let requestLogPath {
            FileManager.default.createFile(atPath: requestLogPath, contents: nil)
            requestLog = FileHandle(forWritingAtPath: requestLogPath)
        } else {
            requestLog = nil
        }
    }

    /// Accepts connections forever, one thread each.
    public func serve() -> Never {
        signal(SIGPIPE, SIG_IGN)
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { continue }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let thread = Thread { [self] in
                self.handle(fd)
                close(fd)
            }
            thread.stackSize = 512 * 1024
            thread.start()
        }
    }

    // MARK: One connection

    final class Connection {
        let fd: Int32
        var buffer = [UInt8]()
        init(fd: Int32) { self.fd = fd }

        /// Reads more bytes; false at end of stream.
        func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return false }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }

        func send(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }

        func send(_ text: String) -> Bool { send(Array(text.utf8)) }

        /// Reads a CRLF-terminated line (without the CRLF).
        func readLine() -> String? {
            while true {
                if let i = buffer.firstIndex(of: 10) {
                    var line = Array(buffer[..<i])
                    if line.last == 13 { line.removeLast() }
                    buffer.removeSubrange(...i)
                    return String(decoding: line, as: UTF8.self)
                }
                if !fill() { return nil }
            }
        }
    }

    func handle(_ fd: Int32) {
        logLock.lock()
        connectionCount += 1
        let connectionID = connectionCount
        logLock.unlock()
        let connection = Connection(fd: fd)
        var served = 0
        let head = HTTPHead(maxHeaders: 200)
        let limits = HTTPLimits(maxRequestLine: 65536, maxHeaderBytes: 1 << 20, maxHeaders: 200)
        while true {
            var parsed = false
            while !parsed {
                let result = connection.buffer.withUnsafeBytes { HTTPParser.parseRequest($0, into: head, limits: limits) }
                switch result {
                case .complete: parsed = true
                case .failure:
                    _ = connection.send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                case .incomplete:
                    if !connection.fill() { return }
                }
            }
            let headBytes = Array(connection.buffer[0..<head.headLength])
            func text(_ start: Int32, _ length: Int32) -> String {
                String(decoding: headBytes[Int(start)..<Int(start + length)], as: UTF8.self)
            }
            let method = text(head.methodStart, head.methodLength)
            let target = text(head.targetStart, head.targetLength)
            var headers: [(String, String)] = []
            for k in 0..<head.fieldCount {
                let f = head.fields[k]
                headers.append((text(f.nameStart, f.nameLength), text(f.valueStart, f.valueLength)))
            }
            let framing = head.requestFraming
            let keepAlive = head.wantsKeepAlive
            let isUpgrade = head.isUpgradeRequest
            let expects = head.expectsContinue
            connection.buffer.removeSubrange(0..<head.headLength)
            if let dropAfter, served >= dropAfter {
                logRequest("DROPPED \(method) \(target)")
                return
            }
            served += 1
            logRequest("\(method) \(target)")
            let path = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? target
            let keep = respond(connection, method: method, path: path, headers: headers, headBytes: headBytes,
                               framing: framing, isUpgrade: isUpgrade, expectsContinue: expects, connectionID: connectionID)
            if !keep || !keepAlive { return }
        }
    }

    func logRequest(_ line: String) {
        guard let requestLog else { return }
        logLock.lock()
        requestLog.write(Data("\(line)\n".utf8))
        logLock.unlock()
    }

    /// Answers one request; returns false when the connection must close.
    func respond(_ c: Connection, method: String, path: String, headers: [(String, String)], headBytes: [UInt8],
                 framing: BodyFraming, isUpgrade: Bool, expectsContinue: Bool, connectionID: Int) -> Bool {
        let parts = path.split(separator: "/").map(String.init)
        let first = parts.first ?? ""
        let argument = parts.count > 1 ? parts[1] : ""
        let common = "X-Served-By: \(name)\r\n" + (load.map { "X-Switchyard-Load: \($0)\r\n" } ?? "")

        if first != "health" {
            if delayMilliseconds > 0 { usleep(UInt32(delayMilliseconds) * 1000) }
            if errorShare > 0 && Double.random(in: 0..<1) < errorShare {
                guard drain(c, framing: framing) else { return false }
                let body = "\(name) failed this request (--error-rate)\n"
                return c.send("HTTP/1.1 500 Internal Server Error\r\n\(common)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
            }
        }
        if let alwaysStatus {
            guard drain(c, framing: framing) else { return false }
            let body = "\(name) fails with \(alwaysStatus)\n"
            return c.send("HTTP/1.1 \(alwaysStatus) \(HeadWriter.reasonPhrase(alwaysStatus))\r\n\(common)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        if first == "echo" || first == "continue" {
            if expectsContinue { _ = c.send("HTTP/1.1 100 Continue\r\n\r\n") }
            return echo(c, framing: framing, common: common)
        }
        // Other paths ignore the request body, but read it so the connection stays in sync.
        guard drain(c, framing: framing) else { return false }
        let isHead = method == "HEAD"

        func simple(_ status: Int, _ body: String, extra: String = "") -> Bool {
            let bytes = Array(body.utf8)
            var response = "HTTP/1.1 \(status) \(HeadWriter.reasonPhrase(status))\r\n\(common)\(extra)Content-Type: text/plain\r\nContent-Length: \(bytes.count)\r\n\r\n"
            if !isHead && status != 204 && status != 304 { response += body }
            return c.send(response)
        }

        switch first {
        case "headers":
            return simple(200, String(decoding: headBytes, as: UTF8.self))
        case "conn":
            return simple(200, "\(name) connection \(connectionID)\n")
        case "bytes":
            let n = Int(argument) ?? 0
            guard c.send("HTTP/1.1 200 OK\r\n\(common)Content-Type: application/octet-stream\r\nContent-Length: \(n)\r\n\r\n") else { return false }
            if isHead { return true }
            return sendPattern(c, count: n, chunked: false)
        case "chunked":
            let n = Int(argument) ?? 0
            guard c.send("HTTP/1.1 200 OK\r\n\(common)Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n") else { return false }
            guard sendPattern(c, count: n, chunked: true) else { return false }
            return c.send("0\r\nX-Checksum: done\r\n\r\n")
        case "status":
            let code = Int(argument) ?? 200
            return simple(code, "\(name) status \(code)\n")
        case "sleep":
            usleep(UInt32(max(0, min(60_000, Int(argument) ?? 0))) * 1000)
            return simple(200, "\(name) slept \(argument) ms\n")
        case "hang":
            sleep(3600)
            return false
        case "close-mid":
            _ = c.send("HTTP/1.1 200 OK\r\n\(common)Content-Length: 100000\r\n\r\n")
            _ = sendPattern(c, count: 1000, chunked: false)
            return false
        case "close-delimited":
            _ = c.send("HTTP/1.1 200 OK\r\n\(common)Connection: close\r\n\r\n\(name) body delimited by close\n")
            return false
        case "upgrade":
            guard isUpgrade else { return simple(426, "upgrade required\n") }
            let protocolName = headers.first { $0.0.lowercased() == "upgrade" }?.1 ?? "echo"
            guard c.send("HTTP/1.1 101 Switching Protocols\r\n\(common)Upgrade: \(protocolName)\r\nConnection: Upgrade\r\n\r\n") else { return false }
            while true {
                if !c.buffer.isEmpty {
                    let bytes = c.buffer
                    c.buffer.removeAll()
                    if !c.send(bytes) { return false }
                }
                if !c.fill() { return false }
            }
        case "bad":
            switch argument {
            case "both-lengths":
                _ = c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            case "two-lengths":
                _ = c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
            case "bare-lf":
                _ = c.send("HTTP/1.1 200 OK\nContent-Length: 5\n\nhello")
            default:
                _ = c.send("HTTP/1.1 200 OK\r\nBad Header\r\n\r\n")
            }
            return false
        default:
            return simple(200, "\(name) \(method) \(path)\n")
        }
    }

    /// Streams `count` bytes of a repeating pattern.
    func sendPattern(_ c: Connection, count: Int, chunked: Bool) -> Bool {
        let block = [UInt8]((0..<65536).map { UInt8(truncatingIfNeeded: 97 + $0 % 26) })
        var left = count
        while left > 0 {
            let n = min(left, block.count)
            if chunked {
                guard c.send(String(n, radix: 16) + "\r\n"), c.send(Array(block[0..<n])), c.send("\r\n") else { return false }
            } else {
                guard c.send(Array(block[0..<n])) else { return false }
            }
            left -= n
        }
        return true
    }

    /// Reads and discards a request body.
    func drain(_ c: Connection, framing: BodyFraming) -> Bool {
        switch framing {
        case .none, .untilClose: return true
        case .contentLength(let n):
            var left = Int(n)
            while left > 0 {
                if c.buffer.isEmpty && !c.fill() { return false }
                let take = min(left, c.buffer.count)
                c.buffer.removeSubrange(0..<take)
                left -= take
            }
            return true
        case .chunked:
            return forEachChunk(c) { _ in true }
        }
    }

    /// Streams the request body back as it arrives.
    func echo(_ c: Connection, framing: BodyFraming, common: String) -> Bool {
        switch framing {
        case .none, .untilClose:
            return c.send("HTTP/1.1 200 OK\r\n\(common)Content-Length: 0\r\n\r\n")
        case .contentLength(let n):
            guard c.send("HTTP/1.1 200 OK\r\n\(common)Content-Type: application/octet-stream\r\nContent-Length: \(n)\r\n\r\n") else { return false }
            var left = Int(n)
            while left > 0 {
                if c.buffer.isEmpty && !c.fill() { return false }
                let take = min(left, c.buffer.count)
                guard c.send(Array(c.buffer[0..<take])) else { return false }
                c.buffer.removeSubrange(0..<take)
                left -= take
            }
            return true
        case .chunked:
            guard c.send("HTTP/1.1 200 OK\r\n\(common)Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n") else { return false }
            let ok = forEachChunk(c) { data in
                c.send(String(data.count, radix: 16) + "\r\n") && c.send(data) && c.send("\r\n")
            }
            return ok && c.send("0\r\n\r\n")
        }
    }

    /// Decodes a chunked body, calling `body` with each piece of data as it arrives.
    func forEachChunk(_ c: Connection, _ body: ([UInt8]) -> Bool) -> Bool {
        while true {
            guard let line = c.readLine() else { return false }
            let sizeText = line.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard let size = Int(sizeText, radix: 16) else { return false }
            if size == 0 {
                while let trailer = c.readLine() { if trailer.isEmpty { return true } }
                return false
            }
            var left = size
            while left > 0 {
                if c.buffer.isEmpty && !c.fill() { return false }
                let take = min(left, c.buffer.count)
                guard body(Array(c.buffer[0..<take])) else { return false }
                c.buffer.removeSubrange(0..<take)
                left -= take
            }
            guard c.readLine() == "" else { return false }
        }
    }
}

public struct DemoError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
