import Foundation
import Glibc
import Synchronization

/// Writes access-log lines on a thread of its own, so a slow disk or a blocked stdout
/// never stalls a worker. Workers hand over batches (every 100 ms or 64 KiB); when the
/// writer falls more than `maxQueuedBytes` behind, new batches are dropped and counted.
public final class AccessLog: Sendable {
    private struct Queue {
        var batches: [[UInt8]] = []
        var queuedBytes = 0
        var closed = false
    }

    private let queue = Mutex(Queue())
    private let wakeup = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let fd: Int32
    private let ownsDescriptor: Bool
    /// Batches dropped because the writer could not keep up.
    public let droppedBytes = Atomic<Int>(0)
    static let maxQueuedBytes = 64 * 1024 * 1024

    /// Opens the log: `nil` path means standard output.
    public init(path: String?) throws {
        if let path {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw ProxyError("cannot open access log \(path): \(String(cString: strerror(errno))); check the directory exists and is writable")
            }
            self.fd = fd
            ownsDescriptor = true
        } else {
            fd = STDOUT_FILENO
            ownsDescriptor = false
        }
        let thread = Thread { [self] in self.writeLoop() }
        thread.name = "switchyard-log"
        thread.start()
    }

    func submit(_ batch: [UInt8]) {
        let accepted = queue.withLock { q -> Bool in
            guard !q.closed, q.queuedBytes + batch.count <= Self.maxQueuedBytes else { return false }
            q.batches.append(batch)
            q.queuedBytes += batch.count
            return true
        }
        if accepted { wakeup.signal() } else { droppedBytes.add(batch.count, ordering: .relaxed) }
    }

    /// Writes what is queued and stops the writer thread.
    public func close() {
        queue.withLock { $0.closed = true }
        wakeup.signal()
        done.wait()
        if ownsDescriptor { Glibc.close(fd) }
    }

    private func writeLoop() {
        while true {
            wakeup.wait()
            let (batches, closed) = queue.withLock { q -> ([[UInt8]], Bool) in
                let b = q.batches
                q.batches.removeAll()
                q.queuedBytes = 0
                return (b, q.closed)
            }
            for batch in batches {
                batch.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                        if n <= 0 { if errno == EINTR { continue }; return }
                        offset += n
                    }
                }
            }
            if closed { done.signal(); return }
        }
    }
}

/// Formats one access-log line (a JSON object) straight into a byte buffer.
enum AccessLogLine {
    static func append(to out: inout [UInt8], requestID: UnsafeBufferPointer<UInt8>, client: UnsafeBufferPointer<UInt8>,
                       method: String, path: String, status: Int, bytes: Int, durationMicros: Int64,
                       pool: String, upstream: String, complete: Bool, tls: (version: String, cipher: String)? = nil) {
        out.append(contentsOf: #"{"time":""#.utf8)
        appendTimestamp(to: &out)
        out.append(contentsOf: #"","request_id":""#.utf8)
        appendEscaped(requestID, to: &out)
        out.append(contentsOf: #"","client":""#.utf8)
        appendEscaped(client, to: &out)
        out.append(contentsOf: #"","method":""#.utf8)
        appendEscaped(method, to: &out)
        out.append(contentsOf: #"","path":""#.utf8)
        appendEscaped(path, to: &out)
        out.append(contentsOf: #"","status":"#.utf8)
        appendDecimal(status, to: &out)
        out.append(contentsOf: #","bytes":"#.utf8)
        appendDecimal(bytes, to: &out)
        out.append(contentsOf: #","duration_ms":"#.utf8)
        appendDecimal(Int(durationMicros / 1000), to: &out)
        out.append(UInt8(ascii: "."))
        let frac = Int(durationMicros % 1000)
        out.append(UInt8(48 + frac / 100)); out.append(UInt8(48 + frac / 10 % 10)); out.append(UInt8(48 + frac % 10))
        out.append(contentsOf: #","pool":""#.utf8)
        appendEscaped(pool, to: &out)
        out.append(contentsOf: #"","upstream":""#.utf8)
        appendEscaped(upstream, to: &out)
        if let tls {
            out.append(contentsOf: #"","tls":""#.utf8)
            appendEscaped(tls.version, to: &out)
            out.append(contentsOf: #"","cipher":""#.utf8)
            appendEscaped(tls.cipher, to: &out)
        }
        out.append(contentsOf: complete ? #""}"#.utf8 : #"","aborted":true}"#.utf8)
        out.append(10)
    }

    static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")); appendDecimal(-value, to: &out); return }
        if value >= 10 { appendDecimal(value / 10, to: &out) }
        out.append(UInt8(48 + value % 10))
    }

    static func appendEscaped(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { appendEscaped($0, to: &out) }
    }

    static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        @inline(__always) func hex(_ d: UInt8) -> UInt8 { d < 10 ? 48 + d : 87 + d }
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\")); out.append(b)
            case 0..<0x20, 0x7F...0xFF:
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex(b >> 4)); out.append(hex(b & 0xF))
            default:
                out.append(b)
            }
        }
    }

    /// RFC 3339 UTC with milliseconds.
    static func appendTimestamp(to out: inout [UInt8]) {
        var tv = Glibc.timeval()
        gettimeofday(&tv, nil)
        var seconds = time_t(tv.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) { out.append(UInt8(48 + v / 10)); out.append(UInt8(48 + v % 10)) }
        appendDecimal(Int(parts.tm_year) + 1900, to: &out)
        out.append(UInt8(ascii: "-")); two(parts.tm_mon + 1)
        out.append(UInt8(ascii: "-")); two(parts.tm_mday)
        out.append(UInt8(ascii: "T")); two(parts.tm_hour)
        out.append(UInt8(ascii: ":")); two(parts.tm_min)
        out.append(UInt8(ascii: ":")); two(parts.tm_sec)
        out.append(UInt8(ascii: "."))
        let ms = Int(tv.tv_usec / 1000)
        out.append(UInt8(48 + ms / 100)); out.append(UInt8(48 + ms / 10 % 10)); out.append(UInt8(48 + ms % 10))
        out.append(UInt8(ascii: "Z"))
    }
}

/// An error the operator can act on.
public struct ProxyError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
