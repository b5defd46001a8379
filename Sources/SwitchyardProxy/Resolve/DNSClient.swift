import CLibevent
import Glibc
import SwitchyardConfig
import SwitchyardDNS

/// Why a name could not be resolved, in words for status and the log.
struct ResolutionFailure: Error, Sendable, Equatable, CustomStringConvertible {
    let reason: String
    init(_ reason: String) { self.reason = reason }
    var description: String { reason }
}

/// A stub resolver that asks the configured DNS servers (`resolvers`) itself: one query per
/// record type over UDP, again over TCP when the answer does not fit in a datagram. Blocking:
/// it runs on the resolver threads only, never on a worker or the control thread.
///
/// Each server is asked in turn, twice round at most, each time waiting `timeout`. NXDOMAIN
/// is final (the name does not exist); SERVFAIL, REFUSED, a timeout or a malformed answer
/// move on to the next server.
enum DNSClient {
    static func resolve(_ target: HostAndPort, family: ResolveFamily, servers: [SocketAddress],
                        timeout: Duration) -> Result<[SocketAddress], ResolutionFailure> {
        let types: [DNSRecordType]
        switch family {
        case .ipv4: types = [.a]
        case .ipv6: types = [.aaaa]
        case .any: types = [.a, .aaaa]
        }
        var addresses: [SocketAddress] = []
        var failures: [ResolutionFailure] = []
        for type in types {
            switch lookup(target.host, type: type, servers: servers, timeoutMs: Int(timeout.milliseconds)) {
            case .success(let found):
                addresses += found.compactMap { SocketAddressText.address(bytes: $0, port: target.port) }
            case .failure(let failure):
                failures.append(failure)
                // A name that does not exist has no record of any type.
                if failure.reason.hasPrefix("NXDOMAIN") { return .failure(failure) }
            }
        }
        if !addresses.isEmpty { return .success(addresses) }
        if let first = failures.first { return .failure(first) }
        let names = types.map { $0 == .a ? "A" : "AAAA" }.joined(separator: " or ")
        return .failure(ResolutionFailure("no \(names) record for \(target.host)"))
    }

    /// The addresses (4 or 16 bytes each) of one record type; an empty success is NODATA.
    static func lookup(_ name: String, type: DNSRecordType, servers: [SocketAddress], timeoutMs: Int) -> Result<[[UInt8]], ResolutionFailure> {
        var lastProblem = ResolutionFailure("no resolver configured")
        for _ in 0..<2 {
            for server in servers {
                let query: DNSQuery
                do { query = try DNSQuery(id: UInt16.random(in: 0...UInt16.max), name: name, type: type) } catch {
                    return .failure(ResolutionFailure("\(name) cannot be asked for: \(error)"))
                }
                var outcome = exchangeUDP(query, server: server, timeoutMs: timeoutMs)
                if case .answer(let answer) = outcome, answer.isTruncated {
                    outcome = exchangeTCP(query, server: server, timeoutMs: timeoutMs)
                }
                switch outcome {
                case .answer(let answer):
                    switch answer.responseCode {
                    case .noError: return .success(answer.addresses)
                    case .nameError: return .failure(ResolutionFailure("NXDOMAIN from \(server): \(name) does not exist"))
                    default: lastProblem = ResolutionFailure("\(answer.responseCode) from \(server)")
                    }
                case .problem(let text):
                    lastProblem = ResolutionFailure("\(text) (\(server))")
                }
            }
        }
        return .failure(lastProblem)
    }

    enum Exchange {
        case answer(DNSAnswer)
        case problem(String)
    }

    /// One query over UDP on a connected socket (so only that server's datagrams arrive, and
    /// a closed port is reported at once). Datagrams for another question are ignored.
    static func exchangeUDP(_ query: DNSQuery, server: SocketAddress, timeoutMs: Int) -> Exchange {
        guard var address = Sockets.Address(server) else { return .problem("unusable resolver address") }
        let fd = socket(address.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .problem("cannot open a socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, address.length) }
        }
        guard connected == 0 else { return .problem("cannot reach: \(String(cString: strerror(errno)))") }
        let message = query.encoded
        let sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == message.count else { return .problem("cannot send the query: \(String(cString: strerror(errno)))") }
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        var buffer = [UInt8](repeating: 0, count: 65_535)
        while true {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return .problem("no answer within \(timeoutMs)ms") }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                let code = errno
                if code == EINTR || code == EAGAIN { continue }
                if code == ECONNREFUSED { return .problem("connection refused: no DNS server listens there") }
                return .problem("cannot read the answer: \(String(cString: strerror(code)))")
            }
            do throws(DNSDecodeError) {
                return .answer(try DNSAnswer(decoding: Array(buffer[0..<n]), answering: query))
            } catch where error.isForAnotherQuestion {
                continue
            } catch {
                return .problem("unusable answer: \(error)")
            }
        }
    }

    /// One query over TCP (RFC 1035 section 4.2.2: each message prefixed with its length),
    /// for answers too large for UDP.
    static func exchangeTCP(_ query: DNSQuery, server: SocketAddress, timeoutMs: Int) -> Exchange {
        guard let address = Sockets.Address(server) else { return .problem("unusable resolver address") }
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        let fd: Int32
        do {
            let started = try Sockets.connect(to: address)
            fd = started.fd
            if !started.connected {
                guard wait(fd, for: Int16(POLLOUT), until: deadline) else { close(fd); return .problem("cannot connect over TCP within \(timeoutMs)ms") }
                let code = Sockets.pendingError(fd)
                if code != 0 { close(fd); return .problem("cannot connect over TCP: \(String(cString: strerror(code)))") }
            }
        } catch {
            return .problem("cannot connect over TCP: \(error)")
        }
        defer { close(fd) }
        let message = query.encoded
        var framed: [UInt8] = [UInt8(truncatingIfNeeded: message.count >> 8), UInt8(truncatingIfNeeded: message.count)]
        framed += message
        var written = 0
        while written < framed.count {
            guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return .problem("cannot send the query over TCP within \(timeoutMs)ms") }
            let n = framed.withUnsafeBytes { send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .problem("cannot send the query over TCP: \(String(cString: strerror(errno)))")
            }
            written += n
        }
        guard let prefix = read(fd, count: 2, until: deadline) else { return .problem("no answer over TCP within \(timeoutMs)ms") }
        let length = Int(prefix[0]) << 8 | Int(prefix[1])
        guard let body = read(fd, count: length, until: deadline) else { return .problem("incomplete answer over TCP within \(timeoutMs)ms") }
        do {
            return .answer(try DNSAnswer(decoding: body, answering: query))
        } catch {
            return .problem("unusable answer over TCP: \(error)")
        }
    }

    /// Exactly `count` bytes, or nil when the connection ends or the deadline passes first.
    private static func read(_ fd: Int32, count: Int, until deadline: Int64) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return nil }
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + filled, count - filled, 0) }
            if n == 0 { return nil }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return nil
            }
            filled += n
        }
        return bytes
    }

    /// Waits until `fd` is ready for `events`; false once `deadline` (monotonic ms) has passed.
    private static func wait(_ fd: Int32, for events: Int16, until deadline: Int64) -> Bool {
        while true {
            let remaining = deadline - monotonicMilliseconds()
            if remaining <= 0 { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&entry, 1, Int32(min(remaining, 60_000)))
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { return false }
        }
    }
}

/// Addresses from the bytes of a record or a socket address.
enum SocketAddressText {
    /// 4 bytes (IPv4) or 16 (IPv6) and a port; nil for other lengths.
    static func address(bytes: [UInt8], port: UInt16) -> SocketAddress? {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return nil
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &text, socklen_t(text.count)) != nil }
        guard ok else { return nil }
        let host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return SocketAddress(parsing: family == AF_INET ? "\(host):\(port)" : "[\(host)]:\(port)")
    }
}
