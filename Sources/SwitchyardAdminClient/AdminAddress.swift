import Foundation

/// Where a proxy's admin API listens: its Unix socket, or its TCP listener (plain HTTP, which
/// the proxy allows on loopback only, or HTTPS). `switchyard ctl --admin` and the deploy
/// plan's `admin:` addresses are written the same way.
public enum AdminAddress: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: UInt16, tls: Bool)

    public var description: String {
        switch self {
        case .unix(let path): return "unix://\(path)"
        case .tcp(let host, let port, let tls): return "\(tls ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        }
    }

    /// `unix:///run/switchyard/admin.sock`, `http://127.0.0.1:9901` or `https://host:9901`
    /// (the port is required); nil for anything else.
    public static func parse(_ text: String) -> AdminAddress? {
        if text.hasPrefix("unix://") {
            let path = String(text.dropFirst("unix://".count))
            return path.hasPrefix("/") ? .unix(path: path) : nil
        }
        for (scheme, tls) in [("https://", true), ("http://", false)] where text.hasPrefix(scheme) {
            var rest = Substring(text.dropFirst(scheme.count))
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]), port > 0 else { return nil }
            let host = String(rest[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            guard !host.isEmpty, !host.contains("/"), !host.contains("@") else { return nil }
            return .tcp(host: host, port: port, tls: tls)
        }
        return nil
    }

    /// True for a TCP address on the loopback interface (127.0.0.0/8, ::1, localhost).
    public var isLoopback: Bool {
        guard case .tcp(let host, _, _) = self else { return true }
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// The connection target: for TCP, with `ca` (a PEM file of trusted CAs, for HTTPS; the
    /// system's store without it) and `serverName` (the name to send and verify when the
    /// certificate names the proxy differently from the address).
    public func target(ca: String? = nil, serverName: String? = nil) -> HTTPClient.Target {
        switch self {
        case .unix(let path): return .unix(path)
        case .tcp(let host, let port, let tls): return .tcp(host: host, port: port, tls: tls, ca: ca, serverName: serverName)
        }
    }

    /// The bearer token for a TCP listener: the environment variable `variable` when set and
    /// not empty, else the contents of `file` (surrounding whitespace dropped); nil when
    /// neither gives one. A file that cannot be read, or holds nothing, is an error naming it.
    public static func token(variable: String, environment: [String: String], file: String?) throws(ClientError) -> String? {
        if let token = environment[variable], !token.isEmpty { return token }
        guard let file else { return nil }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ClientError("cannot read the token file \(file)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw ClientError("the token file \(file) is empty") }
        return token
    }
}
