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

    /// Up to two pieces with one `writev` (plain) or successive `SSL_write`s (TLS): the bytes
    /// written (possibly fewer than asked), `again` when nothing could be written, or `failed`.
    @inline(__always)
    static func transmit(fd: Int32, ssl: OpaquePointer?, _ vectors: inout (iovec, iovec), count: Int32) -> Int {
        guard let ssl else {
            let n = withUnsafePointer(to: &vectors) {
                $0.withMemoryRebound(to: iovec.self, capacity: 2) { sy_writev(fd, $0, count) }
            }
            if n >= 0 { return n }
            return errno == EAGAIN || errno == EINTR ? again : failed
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
