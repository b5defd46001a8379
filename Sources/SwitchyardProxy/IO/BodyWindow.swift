import SwitchyardHTTP

/// Tracks which bytes of a source buffer belong to the message body being forwarded.
///
/// `ready` bytes starting at the buffer's read position are body bytes ready to forward;
/// of those, `sent` have been written already but are kept (request side only) so that a
/// request can be sent again on another connection if the first one failed before any
/// response byte. Bytes after `ready` are not yet examined, or belong to the next message.
struct BodyWindow {
    enum Mode {
        case none
        case length
        case chunked
        /// Chunked on the wire, forwarded without the chunk framing (HTTP/1.0 clients).
        case dechunk
        case untilClose
        case tunnel
    }

    var mode: Mode = .none
    var remaining: Int64 = 0
    var scanner = ChunkedScanner()
    var ready = 0
    var sent = 0
    /// Bytes of the body as they came on the wire (chunk framing included), for the access log.
    var absorbed = 0
    private(set) var ended = true
    var failure: StaticString? = nil

    init() {}

    init(framing: BodyFraming, dechunk: Bool = false) {
        switch framing {
        case .none: mode = .none; ended = true
        case .contentLength(let n): mode = .length; remaining = n; ended = n == 0
        case .chunked: mode = dechunk ? .dechunk : .chunked; ended = false
        case .untilClose: mode = .untilClose; ended = false
        }
    }

    static func tunnel() -> BodyWindow {
        var w = BodyWindow()
        w.mode = .tunnel
        w.ended = false
        return w
    }

    /// Bytes ready to forward and not yet sent.
    @inline(__always) var pending: Int { ready - sent }

    /// Examines newly received bytes of `buffer` and extends `ready`.
    /// Returns false when the framing is invalid (`failure` says why).
    mutating func absorb(_ buffer: IOBuffer) -> Bool {
        let unexamined = buffer.readable - ready
        guard unexamined > 0, !ended || mode == .tunnel else { return true }
        switch mode {
        case .none:
            return true
        case .length:
            let take = Int(min(Int64(unexamined), remaining))
            ready += take
            absorbed += take
            remaining -= Int64(take)
            if remaining == 0 { ended = true }
        case .untilClose, .tunnel:
            ready += unexamined
            absorbed += unexamined
        case .chunked:
            let r = scanner.scan(buffer.readPointer + ready, count: unexamined)
            if let why = r.error { failure = why; return false }
            ready += r.consumed
            absorbed += r.consumed
            if r.ended { ended = true }
        case .dechunk:
            // Keep only chunk data, moving it down over the framing, in place.
            let start = buffer.readPointer + ready
            var read = 0
            var kept = 0
            while read < unexamined && !ended {
                switch scanner.next(start + read, count: unexamined - read) {
                case .framing(let c):
                    read += c
                case .data(let c):
                    if read != kept { (start + kept).update(from: start + read, count: c) }
                    kept += c; read += c
                case .end(let c):
                    read += c
                    ended = true
                case .failure(let why):
                    failure = why
                    return false
                }
            }
            if read != kept {
                let tail = unexamined - read
                if tail > 0 { (start + kept).update(from: start + read, count: tail) }
                buffer.writeIndex -= read - kept
            }
            ready += kept
            absorbed += read
        }
        return true
    }

    /// Marks the body complete when the peer closed (responses delimited by close).
    mutating func endAtClose() { ended = true }
}
