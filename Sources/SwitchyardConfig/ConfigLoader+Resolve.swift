import Yams

/// What a server's `address` gives: an IP address, or a name to resolve.
enum ServerTarget: CustomStringConvertible {
    case address(SocketAddress)
    case name(HostAndPort)

    var description: String {
        switch self {
        case .address(let a): return a.description
        case .name(let n): return n.description
        }
    }
}

/// The schema of DNS names for servers: `address: app.internal:8080`, `resolvers` and `resolve`.
extension NodeReader {
    /// A server's address: IPv4:port, [IPv6]:port, localhost:port, or host.name:port.
    mutating func serverTarget(_ node: Node, _ path: String) -> ServerTarget? {
        guard let text = scalar(node, path) else { return nil }
        if let address = SocketAddress(parsing: text) { return .address(address) }
        if let name = HostAndPort(parsing: text) { return .name(name) }
        var hint = ""
        if let colon = text.lastIndex(of: ":"), text[..<colon].allSatisfy({ $0.isNumber || $0 == "." }) {
            hint = "; \(text[..<colon]) is not an IPv4 address"
        } else if let colon = text.lastIndex(of: ":"), !text.hasPrefix("["), text[..<colon].contains(":") {
            hint = "; write an IPv6 address in brackets, e.g. [::1]:8080"
        } else if let colon = text.lastIndex(of: ":"), HostAndPort.isHostName(Substring(text[..<colon]).droppingTrailingDot) {
            hint = "; the port must be a number from 1 to 65535"
        } else if text.lastIndex(of: ":") != nil {
            hint = "; \(HostAndPort.rule)"
        } else {
            hint = "; the port is missing"
        }
        problem(node, path, "\"\(text)\" is not a valid address; write IPv4:port, [IPv6]:port or host.name:port (port 1-65535)\(hint)")
        return nil
    }

    /// `resolvers: [127.0.0.1:53, "[::1]:53"]`: DNS servers to ask, in order.
    mutating func readResolvers(_ node: Node) -> [SocketAddress] {
        guard let items = sequence(node, "resolvers") else { return [] }
        if items.isEmpty { problem(node, "resolvers", "empty; list DNS servers (e.g. [127.0.0.1:53]) or leave resolvers out to use the system's resolver") }
        var result: [SocketAddress] = []
        for (i, item) in items.enumerated() {
            let path = "resolvers[\(i)]"
            guard let text = scalar(item, path) else { continue }
            // A bare address means the DNS port.
            let withPort = SocketAddress(parsing: text) == nil && !text.hasPrefix("[") && !text.contains(":") ? text + ":53" : text
            guard let address = SocketAddress(parsing: withPort) else {
                problem(item, path, "\"\(text)\" is not a DNS server's address; write an IP address, with a port if it is not 53 (e.g. 127.0.0.1:5353 or [::1]:53)")
                continue
            }
            if result.contains(address) { problem(item, path, "\(address) is listed twice") }
            result.append(address)
        }
        return result
    }

    /// The top-level `resolve: { interval, family, timeout }`.
    mutating func readResolve(_ node: Node, into config: inout SwitchyardConfig) {
        var timeout: Duration? = nil
        config.resolve = readResolvePolicy(node, path: "resolve", allowed: ["interval", "family", "timeout"],
                                           defaults: ResolvePolicy(), timeout: &timeout)
        if let timeout { config.resolver.timeout = timeout }
    }

    /// `resolve: { interval: 10s, family: ipv4 }`; `defaults` fills what is not given.
    /// `timeout` is set when `allowed` has it and the file gives it.
    mutating func readResolvePolicy(_ node: Node, path: String, allowed: [String], defaults: ResolvePolicy) -> ResolvePolicy {
        var ignored: Duration? = nil
        return readResolvePolicy(node, path: path, allowed: allowed, defaults: defaults, timeout: &ignored)
    }

    mutating func readResolvePolicy(_ node: Node, path: String, allowed: [String], defaults: ResolvePolicy,
                                    timeout: inout Duration?) -> ResolvePolicy {
        var policy = defaults
        guard let fields = mapping(node, path, allowed: allowed) else { return policy }
        for (key, v) in fields {
            let keyPath = "\(path).\(key)"
            switch key {
            case "interval":
                guard let d = duration(v, keyPath) else { continue }
                if d < ResolvePolicy.minimumInterval {
                    problem(v, keyPath, "must be at least 1s; names are asked for again at most once a second")
                } else {
                    policy.interval = d
                }
            case "family":
                guard let text = scalar(v, keyPath) else { continue }
                if let family = ResolveFamily(rawValue: text) { policy.family = family }
                else { problem(v, keyPath, "\"\(text)\" is not a family; use ipv4 (A records), ipv6 (AAAA) or any (both)") }
            case "timeout":
                guard let d = duration(v, keyPath) else { continue }
                if d < ResolverSettings.minimumTimeout || d > ResolverSettings.maximumTimeout {
                    problem(v, keyPath, "must be from 100ms to 30s")
                } else {
                    timeout = d
                }
            default: break
            }
        }
        return policy
    }
}

private extension Substring {
    var droppingTrailingDot: Substring { hasSuffix(".") ? dropLast() : self }
}
