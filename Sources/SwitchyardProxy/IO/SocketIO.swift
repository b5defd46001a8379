import CLibevent
import COpenSSL
import Glibc

/// Reads and writes for both kinds of connection, plain or TLS, with one convention so the
/// state machines do not care which: a positive count of bytes, or one of these codes.
enum SocketIO {
    static let endOfStream = 0
    /// Nothing now; wait for readability (or, for a plain write, writability).
    static let again = -1
    static let failed = -2
    /// TLS needs the socket writable before it can read on (the caller arms its write event).
    static let againWhenWritable = -3

    /// One `recv` (plain) or `SSL_read` (TLS).
    @inline(__always)
    static func receive(fd: Int32, ssl: OpaquePointer?, into p: UnsafeMutablePointer<UInt8>, count n: Int) -> Int {
        guard let ssl else {
            let r = sy_recv(fd, p, n)
            if r >= 0 { return r }
            return errno == EAGAIN || errno == EINTR ? again : failed
        }
        let r = SSL_read(ssl, p, Int32(min(n, Int(Int32.max))))
        if r > 0 { return Int(r) }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ: return again
        case SSL_ERROR_WANT_WRITE: return againWhenWritable
        case SSL_ERROR_ZERO_RETURN: return endOfStream
        default: ERR_clear_error(); return failed
        }
    }

    /// The most plaintext one TLS record carries: two pieces that fit together are copied into
    /// one record, so a response head and a small body leave in one `write` instead of two.
    static let recordCoalesceLimit = 16_384

    /// Up to two pieces with one `writev` (plain) or `SSL_write`s (TLS; one when both fit in
    /// `scratch`, of `recordCoalesceLimit` bytes): the bytes written (possibly fewer than
    /// asked), `again` when nothing could be written, or `failed`.
    @inline(__always)
    static func transmit(fd: Int32, ssl: OpaquePointer?, _ vectors: inout (iovec, iovec), count: Int32,
                         scratch: UnsafeMutableRawPointer) -> Int {
        guard let ssl else {
            let n = withUnsafePointer(to: &vectors) {
                $0.withMemoryRebound(to: iovec.self, capacity: 2) { sy_writev(fd, $0, count) }
            }
            if n >= 0 { return n }
            return errno == EAGAIN || errno == EINTR ? again : failed
        }
        if count == 2, vectors.0.iov_len > 0, vectors.1.iov_len > 0, vectors.0.iov_len <= recordCoalesceLimit - vectors.1.iov_len,
           let first = vectors.0.iov_base, let second = vectors.1.iov_base {
            // A retry after WANT_WRITE copies the same bytes again: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows it.
            let length = vectors.0.iov_len + vectors.1.iov_len
            scratch.copyMemory(from: first, byteCount: vectors.0.iov_len)
            (scratch + vectors.0.iov_len).copyMemory(from: second, byteCount: vectors.1.iov_len)
            let r = SSL_write(ssl, scratch, Int32(length))
            if r > 0 { return Int(r) }
            let error = SSL_get_error(ssl, r)
            if error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ { return again }
            ERR_clear_error()
            return failed
        }
        var total = 0
        for i in 0..<Int(count) {
            let v = i == 0 ? vectors.0 : vectors.1
            let r = SSL_write(ssl, v.iov_base, Int32(v.iov_len))
            if r > 0 {
                total += Int(r)
                if Int(r) < v.iov_len { return total }
                continue
            }
            let error = SSL_get_error(ssl, r)
            if error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ { return total > 0 ? total : again }
            ERR_clear_error()
            return total > 0 ? total : failed
        }
        return total
    }
}
