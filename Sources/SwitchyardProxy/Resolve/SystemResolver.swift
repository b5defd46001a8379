import CLibevent
import Glibc
import SwitchyardConfig

/// The system's resolver: getaddrinfo, which reads /etc/hosts and asks the servers of
/// /etc/resolv.conf as nsswitch.conf says. Blocking, for the resolver threads only; its
/// timeouts are the system's (resolv.conf `options timeout:N attempts:N`).
enum SystemResolver {
    static func resolve(_ target: HostAndPort, family: ResolveFamily) -> Result<[SocketAddress], ResolutionFailure> {
        var hints = addrinfo()
        switch family {
        case .ipv4: hints.ai_family = AF_INET
        case .ipv6: hints.ai_family = AF_INET6
        case .any: hints.ai_family = AF_UNSPEC
        }
        // One entry per address (not one per socket type). No AI_ADDRCONFIG: on a host with
        // loopback addresses only it would hide every IPv4 answer.
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(target.host, nil, &hints, &list)
        guard rc == 0 else { return .failure(ResolutionFailure(describe(rc, host: target.host))) }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry = list
        while let current = entry {
            if let raw = current.pointee.ai_addr {
                switch current.pointee.ai_family {
                case AF_INET:
                    let bytes = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) }
                    }
                    if let a = SocketAddressText.address(bytes: bytes, port: target.port) { addresses.append(a) }
                case AF_INET6:
                    let bytes = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                        withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) }
                    }
                    if let a = SocketAddressText.address(bytes: bytes, port: target.port) { addresses.append(a) }
                default:
                    break
                }
            }
            entry = current.pointee.ai_next
        }
        return addresses.isEmpty ? .failure(ResolutionFailure("no address for \(target.host)")) : .success(addresses)
    }

    /// getaddrinfo's error in an operator's words.
    static func describe(_ code: Int32, host: String) -> String {
        switch code {
        case EAI_NONAME: return "\(host) does not exist (NXDOMAIN, and not in /etc/hosts)"
        case EAI_AGAIN: return "temporary failure resolving \(host) (a resolver timed out or answered SERVFAIL)"
        case EAI_FAIL: return "the resolver failed for \(host) (a non-recoverable error)"
        case EAI_SYSTEM: return "cannot resolve \(host): \(String(cString: strerror(errno)))"
        default: return "cannot resolve \(host): \(String(cString: gai_strerror(code)))"
        }
    }
}
