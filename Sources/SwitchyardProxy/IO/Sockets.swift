import CLibevent
import Glibc
import SwitchyardConfig

/// Thin, allocation-free wrappers over the socket calls the data plane makes.
enum Sockets {
    /// A socket address in the form `connect`/`bind` take.
    struct Address {
        var storage = sockaddr_storage()
        var length: socklen_t = 0

        init?(_ address: SocketAddress) {
            switch address.family {
            case .ipv4:
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = address.port.bigEndian
                guard inet_pton(AF_INET, address.host, &sin.sin_addr) == 1 else { return nil }
                withUnsafeBytes(of: &sin) { src in
                    withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
                }
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
            case .ipv6:
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = address.port.bigEndian
                guard inet_pton(AF_INET6, address.host, &sin6.sin6_addr) == 1 else { return nil }
                withUnsafeBytes(of: &sin6) { src in
                    withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
                }
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }

        var family: Int32 { Int32(storage.ss_family) }
    }

    struct Failure: Error, CustomStringConvertible {
        let call: String
        let code: Int32
        var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    /// A non-blocking listening socket with SO_REUSEPORT, so each worker has its own
    /// accept queue and the kernel spreads connections across workers.
    static func listen(on address: SocketAddress, backlog: Int32 = 4096) throws -> Int32 {
        guard var addr = Address(address) else { throw Failure(call: "address \(address)", code: EINVAL) }
        let fd = socket(addr.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &addr.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, addr.length) }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw Failure(call: "bind \(address)", code: code)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw Failure(call: "listen \(address)", code: code)
        }
        return fd
    }

    /// Starts a non-blocking connect. Returns the socket and whether it connected at once;
    /// throws when the connection failed at once (e.g. refused on loopback).
    static func connect(to address: Address) throws(Failure) -> (fd: Int32, connected: Bool) {
        var addr = address
        let fd = socket(addr.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &addr.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, addr.length) }
        }
        if rc == 0 { return (fd, true) }
        let code = errno
        if code == EINPROGRESS { return (fd, false) }
        close(fd)
        throw Failure(call: "connect", code: code)
    }

    /// The pending error of a socket whose non-blocking connect finished.
    static func pendingError(_ fd: Int32) -> Int32 {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
        return code
    }

    /// The process's open-file limit (soft, hard).
    static func openFileLimit() -> (soft: UInt64, hard: UInt64) {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, 0) }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Raises the soft open-file limit to the hard limit: every client and upstream connection
    /// takes a descriptor, and the usual soft default (1024) is far below `max_connections`.
    /// Returns the soft limit in force afterwards.
    @discardableResult
    static func raiseOpenFileLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }

    /// Writes the textual client IP of `storage` into `out` and returns its length.
    static func formatIP(_ storage: inout sockaddr_storage, into out: UnsafeMutablePointer<UInt8>, capacity: Int) -> Int {
        if Int32(storage.ss_family) == AF_INET, capacity >= 15 {
            // By hand: inet_ntop formats IPv4 through sprintf, about 2,700 instructions for every
            // accepted connection (measured with callgrind under a connection churn).
            let networkOrder = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            }
            let address = UInt32(bigEndian: networkOrder)
            var n = 0
            for shift in stride(from: 24, through: 0, by: -8) {
                let octet = Int((address >> UInt32(shift)) & 0xFF)
                if octet >= 100 { out[n] = UInt8(48 + octet / 100); n += 1 }
                if octet >= 10 { out[n] = UInt8(48 + octet / 10 % 10); n += 1 }
                out[n] = UInt8(48 + octet % 10); n += 1
                if shift > 0 { out[n] = UInt8(ascii: "."); n += 1 }
            }
            return n
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = Int32(storage.ss_family)
        let ok: Bool = withUnsafePointer(to: &storage) { p in
            if family == AF_INET {
                return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    return inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil
                }
            } else if family == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var a = sin6.pointee.sin6_addr
                    return inet_ntop(AF_INET6, &a, &text, socklen_t(text.count)) != nil
                }
            }
            return false
        }
        guard ok else { return 0 }
        var n = 0
        while n < capacity, text[n] != 0 { out[n] = UInt8(bitPattern: text[n]); n += 1 }
        return n
    }
}

/// Monotonic milliseconds from the coarse clock: a vDSO read, never a system call.
@inline(__always) func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Precise monotonic microseconds, for request durations.
@inline(__always) func monotonicMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

@inline(__always) func timeval(milliseconds ms: Int64) -> timeval {
    Glibc.timeval(tv_sec: Int(ms / 1000), tv_usec: Int((ms % 1000) * 1000))
}

/// Event flags as libevent's C API takes them (`short`).
enum EventFlags {
    static let read = Int16(EV_READ)
    static let write = Int16(EV_WRITE)
    static let persist = Int16(EV_PERSIST)
    static let timeout = Int16(EV_TIMEOUT)
    static let signal = Int16(EV_SIGNAL)
}

/// Writes an operator message to standard error (rare events only: ejections, returns), as
/// text or as a JSON line (`log_format`); see ProcessLog.
func logToStandardError(_ text: String, level: ProcessLog.Level = .info, fields: [String: String] = [:]) {
    ProcessLog.write(text, level: level, fields: fields)
}
