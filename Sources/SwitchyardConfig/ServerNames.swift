/// A server given by a DNS name rather than an IP address: `app.internal:8080`.
///
/// The proxy resolves the name at start, at reload and then on an interval; each address
/// of the answer becomes one server of the pool (see `ResolvedNames`).
public struct NamedServerConfig: Sendable, Equatable {
    /// The server's name within its pool; defaults to `host:port` as written (lowercased).
    public var name: String
    public var target: HostAndPort
    /// 0...1000, shared by the addresses the name resolves to.
    public var weight: Int

    public init(name: String, target: HostAndPort, weight: Int) {
        self.name = name
        self.target = target
        self.weight = weight
    }
}

/// A host name and a port: `app.internal:8080`.
public struct HostAndPort: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Lowercased, without a trailing dot.
    public var host: String
    public var port: UInt16

    public var description: String { "\(host):\(port)" }

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `name:port`, where the name is a host name by `isHostName` (port 1-65535).
    /// IP literals are not names: `SocketAddress(parsing:)` reads those.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = text[..<colon]
        let portPart = text[text.index(after: colon)...]
        guard !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = UInt16(portPart), port > 0 else { return nil }
        if host.hasSuffix(".") { host = host.dropLast() }
        guard Self.isHostName(host) else { return nil }
        self.host = host.lowercased()
        self.port = port
    }

    /// Host names as DNS and /etc/hosts know them: labels of letters, digits, `-` and `_`
    /// (Docker Compose service names use it), 1 to 63 characters, not starting or ending
    /// with `-`, separated by dots; at most 253 characters. The last label must not be all
    /// digits, so that a mistyped IPv4 address (`10.0.0.256`) is not taken for a name.
    public static func isHostName(_ text: Substring) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.utf8.count),
                  label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }),
                  label.first != "-", label.last != "-" else { return false }
        }
        return !(labels.last?.allSatisfy(\.isNumber) ?? true)
    }

    public static let rule = "a host name is labels of letters, digits, '-' and '_' (1 to 63 each, not starting or ending with '-') separated by dots, at most 253 characters, and does not end in a number"
}

/// Which addresses of a name are used.
public enum ResolveFamily: String, Sendable, Equatable, CaseIterable {
    /// A records only.
    case ipv4
    /// AAAA records only.
    case ipv6
    /// Both.
    case any
}

/// How often, and for which address families, the names of a pool's servers are resolved:
/// `resolve: { interval: 10s, family: ipv4 }` at the top of the file (every pool) or in a pool.
public struct ResolvePolicy: Sendable, Equatable {
    public var interval: Duration = .seconds(10)
    public var family: ResolveFamily = .ipv4

    public init() {}

    /// Resolving more often than this is refused: names would be asked for faster than
    /// resolvers' answers change, for no gain.
    public static let minimumInterval: Duration = .seconds(1)
}

/// Where names are resolved: `resolvers: [127.0.0.1:53]` asks those DNS servers directly
/// (UDP, TCP for answers that do not fit); without it, the system's resolver
/// (getaddrinfo: /etc/hosts, then the servers in /etc/resolv.conf).
public struct ResolverSettings: Sendable, Equatable {
    /// Tried in order; empty for the system's resolver.
    public var servers: [SocketAddress] = []
    /// How long to wait for one server's answer (`resolve.timeout`).
    public var timeout: Duration = .seconds(1)

    public init() {}

    public static let minimumTimeout: Duration = .milliseconds(100)
    public static let maximumTimeout: Duration = .seconds(30)
}
