import Foundation
import Glibc
import Synchronization
import SwitchyardRouting

/// Writes access-log lines on a thread of its own, so a slow disk or a blocked stdout
/// never stalls a worker. Workers hand over batches (every 100 ms or 64 KiB); when the
/// writer falls more than `maxQueuedBytes` behind, new batches are dropped and counted.
///
/// `reopen()` (SIGUSR1) makes the writer open the path again between two batches, for
/// logrotate: what was handed over before goes to the old file, what comes after to the new
/// one, and no line is lost or split.
public final class AccessLog: Sendable {
    private struct Queue {
        var batches: [[UInt8]] = []
        var queuedBytes = 0
        var closed = false
        var reopenRequested = false
    }

    private let queue = Mutex(Queue())
    private let wakeup = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    /// The file, or nil for standard output.
    private let path: String?
    /// Batches dropped because the writer could not keep up.
    public let droppedBytes = Atomic<Int>(0)
    static let maxQueuedBytes = 64 * 1024 * 1024

    /// Opens the log: `nil` path means standard output.
    public init(path: String?) throws {
        self.path = path
        let fd = try path.map(Self.open) ?? STDOUT_FILENO
        // The descriptor belongs to the writer thread from here on (it reopens and closes it).
        let thread = Thread { [self] in self.writeLoop(fd: fd) }
        thread.name = "switchyard-log"
        thread.start()
    }

    static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ProxyError("cannot open access log \(path): \(String(cString: strerror(errno))); check the directory exists and is writable")
        }
        return fd
    }

    /// Opens the file again by its path once the batches handed over so far are written (the
    /// old file may have been moved away). Standard output is not reopened. Any thread.
    public func reopen() {
        guard path != nil else { return }
        queue.withLock { $0.reopenRequested = true }
        wakeup.signal()
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

    /// Writes what is queued and stops the writer thread (which closes the file).
    public func close() {
        queue.withLock { $0.closed = true }
        wakeup.signal()
        done.wait()
    }

    private func writeLoop(fd initial: Int32) {
        var fd = initial
        while true {
            wakeup.wait()
            // The batches and the reopen request are taken together: every batch handed over
            // before the request goes to the old file, every later one to the new file.
            let (batches, closed, reopen) = queue.withLock { q -> ([[UInt8]], Bool, Bool) in
                let b = q.batches
                q.batches.removeAll()
                q.queuedBytes = 0
                defer { q.reopenRequested = false }
                return (b, q.closed, q.reopenRequested)
            }
            for batch in batches {
                batch.withUnsafeBytes { raw in
                    guard let base = raw.baseAddress else { return }
                    var offset = 0
                    while offset < raw.count {
                        let n = write(fd, base + offset, raw.count - offset)
                        if n <= 0 { if errno == EINTR { continue }; return }
                        offset += n
                    }
                }
            }
            if reopen, let path {
                do {
                    let fresh = try Self.open(path)
                    Glibc.close(fd)
                    fd = fresh
                    logToStandardError("switchyard: SIGUSR1: access log \(path) reopened")
                } catch {
                    // Lines keep going to the old file, so none is lost; the next SIGUSR1 tries again.
                    logToStandardError("switchyard: SIGUSR1: \(error); still writing to the file opened before")
                }
            }
            if closed {
                if path != nil { Glibc.close(fd) }
                done.signal()
                return
            }
        }
    }
}

/// Formats one access-log line (a JSON object) straight into a byte buffer. The fields are
/// described in docs/proxying.md; absent values are `null`, never left out.
enum AccessLogLine {
    static func append(to out: inout [UInt8], requestID: UnsafeBufferPointer<UInt8>, client: UnsafeBufferPointer<UInt8>,
                       host: UnsafeBufferPointer<UInt8>, method: String, path: String, status: Int, bytes: Int, requestBytes: Int,
                       durationMicros: Int64, service: String?, pool: String, version: String?, route: RouteReason?,
                       upstream: String, upstreamStatus: Int, upstreamMicros: Int64?, retries: Int,
                       complete: Bool, tls: (version: String, cipher: String)? = nil) {
        out.append(contentsOf: #"{"time":""#.utf8)
        appendTimestamp(to: &out)
        out.append(contentsOf: #"","request_id":""#.utf8)
        appendEscaped(requestID, to: &out)
        out.append(contentsOf: #"","client":""#.utf8)
        appendEscaped(client, to: &out)
        out.append(contentsOf: #"","host":""#.utf8)
        appendEscaped(host, to: &out)
        out.append(contentsOf: #"","method":""#.utf8)
        appendEscaped(method, to: &out)
        out.append(contentsOf: #"","path":""#.utf8)
        appendEscaped(path, to: &out)
        out.append(contentsOf: #"","status":"#.utf8)
        appendDecimal(status, to: &out)
        out.append(contentsOf: #","bytes":"#.utf8)
        appendDecimal(bytes, to: &out)
        out.append(contentsOf: #","request_bytes":"#.utf8)
        appendDecimal(requestBytes, to: &out)
        out.append(contentsOf: #","duration_ms":"#.utf8)
        appendMilliseconds(durationMicros, to: &out)
        out.append(contentsOf: #","service":"#.utf8)
        appendStringOrNull(service, to: &out)
        out.append(contentsOf: #","pool":""#.utf8)
        appendEscaped(pool, to: &out)
        out.append(contentsOf: #"","version":"#.utf8)
        appendStringOrNull(version, to: &out)
        out.append(contentsOf: #","route":"#.utf8)
        if let route {
            out.append(UInt8(ascii: "\""))
            route.name.withUTF8Buffer { out.append(contentsOf: $0) }
            out.append(UInt8(ascii: "\""))
        } else {
            out.append(contentsOf: "null".utf8)
        }
        out.append(contentsOf: #","upstream":""#.utf8)
        appendEscaped(upstream, to: &out)
        out.append(contentsOf: #"","upstream_status":"#.utf8)
        if upstreamStatus > 0 { appendDecimal(upstreamStatus, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","upstream_ms":"#.utf8)
        if let upstreamMicros { appendMilliseconds(upstreamMicros, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","retries":"#.utf8)
        appendDecimal(retries, to: &out)
        if let tls {
            out.append(contentsOf: #","tls":""#.utf8)
            appendEscaped(tls.version, to: &out)
            out.append(contentsOf: #"","cipher":""#.utf8)
            appendEscaped(tls.cipher, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: complete ? "}".utf8 : #","aborted":true}"#.utf8)
        out.append(10)
    }

    /// Microseconds as milliseconds with three decimals, e.g. 12.345.
    static func appendMilliseconds(_ micros: Int64, to out: inout [UInt8]) {
        let value = max(0, micros) // a monotonic clock never runs back, but a log line must never be malformed
        appendDecimal(Int(value / 1000), to: &out)
        out.append(UInt8(ascii: "."))
        let frac = Int(value % 1000)
        out.append(UInt8(48 + frac / 100)); out.append(UInt8(48 + frac / 10 % 10)); out.append(UInt8(48 + frac % 10))
    }

    /// A JSON string, or `null`.
    static func appendStringOrNull(_ s: String?, to out: inout [UInt8]) {
        guard let s else { out.append(contentsOf: "null".utf8); return }
        out.append(UInt8(ascii: "\""))
        appendEscaped(s, to: &out)
        out.append(UInt8(ascii: "\""))
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
