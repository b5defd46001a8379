import Foundation
import Glibc
import Synchronization
import SwitchyardHTTP
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
    /// Lines in the batches dropped (`switchyard_access_log_dropped_lines_total`).
    public let droppedLines = Atomic<Int>(0)
    /// Writes that failed; the rest of that batch is lost (`switchyard_access_log_write_errors_total`).
    public let writeErrors = Atomic<Int>(0)
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
        if accepted {
            wakeup.signal()
        } else {
            droppedBytes.add(batch.count, ordering: .relaxed)
            // Only when dropping (rare): every line ends with a newline.
            var lines = 0
            for byte in batch where byte == 0x0A { lines += 1 }
            droppedLines.add(lines, ordering: .relaxed)
        }
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
                        if n <= 0 {
                            if errno == EINTR { continue }
                            writeErrors.add(1, ordering: .relaxed)
                            return
                        }
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

/// The values of one access-log line (the fields are described in docs/proxying.md).
struct AccessLogEntry {
    var requestID: UnsafeBufferPointer<UInt8>
    var client: UnsafeBufferPointer<UInt8>
    var host: UnsafeBufferPointer<UInt8>
    var method: String
    var path: String
    var status: Int
    var bytes: Int
    var requestBytes: Int
    var durationMicros: Int64
    var service: String?
    var pool: String
    var version: String?
    var route: RouteReason?
    var upstream: String
    var upstreamStatus: Int
    var upstreamMicros: Int64?
    var retries: Int
    var complete: Bool
    var tls: (version: String, cipher: String)?
}

/// Formats one access-log line (a JSON object; absent values are `null`, never left out).
/// The line is written with plain stores into a fixed scratch buffer and appended to the
/// worker's log buffer in one copy, so a line costs no allocation and few checks.
enum AccessLogLine {
    /// Size of the scratch buffer a worker keeps for one line; a longer line (a path of many
    /// kilobytes) is written into a buffer of its own size.
    static let scratchCapacity = 16 * 1024

    /// Appends `entry`'s line to `out`, formatting it in `scratch` (`scratchCapacity` bytes).
    static func append(_ entry: AccessLogEntry, to out: inout [UInt8], scratch: UnsafeMutablePointer<UInt8>) {
        var w = ByteWriter(base: scratch, capacity: scratchCapacity)
        write(entry, into: &w)
        if !w.overflowed {
            out.append(contentsOf: UnsafeBufferPointer(start: scratch, count: w.count))
            return
        }
        // Each variable byte takes at most 6 when escaped; the rest of the line is well under 1 KiB.
        var variable = entry.requestID.count + entry.client.count + entry.host.count + entry.method.utf8.count
        variable += entry.path.utf8.count + (entry.service?.utf8.count ?? 0) + entry.pool.utf8.count
        variable += (entry.version?.utf8.count ?? 0) + entry.upstream.utf8.count
        variable += (entry.tls?.version.utf8.count ?? 0) + (entry.tls?.cipher.utf8.count ?? 0)
        let capacity = 1024 + 6 * variable
        let large = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { large.deallocate() }
        var big = ByteWriter(base: large, capacity: capacity)
        write(entry, into: &big)
        out.append(contentsOf: UnsafeBufferPointer(start: large, count: big.count))
    }

    static func write(_ e: AccessLogEntry, into w: inout ByteWriter) {
        w.append(#"{"time":""#)
        appendTimestamp(to: &w)
        w.append(#"","request_id":""#)
        appendEscaped(e.requestID, to: &w)
        w.append(#"","client":""#)
        appendEscaped(e.client, to: &w)
        w.append(#"","host":""#)
        appendEscaped(e.host, to: &w)
        w.append(#"","method":""#)
        appendEscaped(e.method, to: &w)
        w.append(#"","path":""#)
        appendEscaped(e.path, to: &w)
        w.append(#"","status":"#)
        w.append(decimal: e.status)
        w.append(#","bytes":"#)
        w.append(decimal: e.bytes)
        w.append(#","request_bytes":"#)
        w.append(decimal: e.requestBytes)
        w.append(#","duration_ms":"#)
        appendMilliseconds(e.durationMicros, to: &w)
        w.append(#","service":"#)
        appendStringOrNull(e.service, to: &w)
        w.append(#","pool":""#)
        appendEscaped(e.pool, to: &w)
        w.append(#"","version":"#)
        appendStringOrNull(e.version, to: &w)
        w.append(#","route":"#)
        if let route = e.route {
            w.append(byte: UInt8(ascii: "\""))
            w.append(route.name)
            w.append(byte: UInt8(ascii: "\""))
        } else {
            w.append("null")
        }
        w.append(#","upstream":""#)
        appendEscaped(e.upstream, to: &w)
        w.append(#"","upstream_status":"#)
        if e.upstreamStatus > 0 { w.append(decimal: e.upstreamStatus) } else { w.append("null") }
        w.append(#","upstream_ms":"#)
        if let micros = e.upstreamMicros { appendMilliseconds(micros, to: &w) } else { w.append("null") }
        w.append(#","retries":"#)
        w.append(decimal: e.retries)
        if let tls = e.tls {
            w.append(#","tls":""#)
            appendEscaped(tls.version, to: &w)
            w.append(#"","cipher":""#)
            appendEscaped(tls.cipher, to: &w)
            w.append(byte: UInt8(ascii: "\""))
        }
        if e.complete { w.append("}\n") } else { w.append(",\"aborted\":true}\n") }
    }

    /// Microseconds as milliseconds with three decimals, e.g. 12.345.
    static func appendMilliseconds(_ micros: Int64, to w: inout ByteWriter) {
        let value = max(0, micros) // a monotonic clock never runs back, but a line must never be malformed
        w.append(decimal: Int(value / 1000))
        w.append(byte: UInt8(ascii: "."))
        let frac = Int(value % 1000)
        w.append(byte: UInt8(48 + frac / 100)); w.append(byte: UInt8(48 + frac / 10 % 10)); w.append(byte: UInt8(48 + frac % 10))
    }

    /// A JSON string, or `null`.
    static func appendStringOrNull(_ s: String?, to w: inout ByteWriter) {
        guard let s else { w.append("null"); return }
        w.append(byte: UInt8(ascii: "\""))
        appendEscaped(s, to: &w)
        w.append(byte: UInt8(ascii: "\""))
    }

    static func appendEscaped(_ s: String, to w: inout ByteWriter) {
        var s = s
        s.withUTF8 { appendEscaped($0, to: &w) }
    }

    /// JSON string contents: runs of plain bytes are copied whole; quotes, backslashes,
    /// control characters and non-ASCII bytes are escaped.
    static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to w: inout ByteWriter) {
        guard let base = bytes.baseAddress else { return }
        @inline(__always) func hex(_ d: UInt8) -> UInt8 { d < 10 ? 48 + d : 87 + d }
        var run = 0
        for i in 0..<bytes.count {
            let b = base[i]
            if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") { continue }
            w.append(base + run, i - run)
            run = i + 1
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
                w.append(byte: UInt8(ascii: "\\")); w.append(byte: b)
            } else {
                w.append(#"\u00"#)
                w.append(byte: hex(b >> 4)); w.append(byte: hex(b & 0xF))
            }
        }
        w.append(base + run, bytes.count - run)
    }

    /// RFC 3339 UTC with milliseconds.
    static func appendTimestamp(to w: inout ByteWriter) {
        var tv = Glibc.timeval()
        gettimeofday(&tv, nil)
        var seconds = time_t(tv.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32, _ w: inout ByteWriter) { w.append(byte: UInt8(48 + v / 10)); w.append(byte: UInt8(48 + v % 10)) }
        w.append(decimal: Int(parts.tm_year) + 1900)
        w.append(byte: UInt8(ascii: "-")); two(parts.tm_mon + 1, &w)
        w.append(byte: UInt8(ascii: "-")); two(parts.tm_mday, &w)
        w.append(byte: UInt8(ascii: "T")); two(parts.tm_hour, &w)
        w.append(byte: UInt8(ascii: ":")); two(parts.tm_min, &w)
        w.append(byte: UInt8(ascii: ":")); two(parts.tm_sec, &w)
        w.append(byte: UInt8(ascii: "."))
        let ms = Int(tv.tv_usec / 1000)
        w.append(byte: UInt8(48 + ms / 100)); w.append(byte: UInt8(48 + ms / 10 % 10)); w.append(byte: UInt8(48 + ms % 10))
        w.append(byte: UInt8(ascii: "Z"))
    }
}

/// An error the operator can act on.
public struct ProxyError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
