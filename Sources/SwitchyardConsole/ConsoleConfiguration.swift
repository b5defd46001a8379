import Foundation
import SwitchyardConfig
import Yams

/// `console.yaml`: where the console listens and keeps its records, the plans it knows, and
/// its access rules. Every key is optional; with no file at all the console runs on its
/// embedded default (SQLite under `.switchyard/`, loopback listener).
public struct ConsoleConfiguration: Sendable {
    public var listenHost = "127.0.0.1"
    public var listenPort = 9900
    /// `sqlite:PATH` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
    public var database = "sqlite:.switchyard/console.sqlite"
    /// Where executed rollouts keep their working history and output.
    public var dataDirectory = ".switchyard/console"
    /// Plan files of the services the console can deploy itself (and watches).
    public var plans: [String] = []
    /// How often each proxy's status and metrics are read.
    public var pollInterval: Duration = .seconds(5)
    /// How much of that the console keeps in memory.
    public var window: Duration = .seconds(900)
    /// A running rollout that has not reported for this long is marked crashed.
    public var lease: Duration = .seconds(15)
    /// Callers without a token or session may read (role viewer).
    public var anonymousViewer = false
    /// Environments where approval must come from someone other than the rollout's starter.
    public var separateApprover: [String] = []
    public var sessionLifetime: Duration = .seconds(12 * 3600)
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Where this file was read from, for messages.
    public var file: String?

    public init() {}

    public var listenDescription: String { "\(tlsCertificate == nil ? "http" : "https")://\(listenHost.contains(":") ? "[\(listenHost)]" : listenHost):\(listenPort)" }

    static let keys = ["listen", "database", "data_dir", "plans", "poll_interval", "window", "lease", "anonymous_viewer",
                       "separate_approver", "session_lifetime", "tls"]

    public static func load(path: String) throws(ConfigError) -> ConsoleConfiguration {
        try NodeReader.load(path: path, what: "the console's configuration") { (text: String) throws(ConfigError) in try parse(yaml: text, file: path) }
    }

    public static func parse(yaml: String, file: String) throws(ConfigError) -> ConsoleConfiguration {
        try NodeReader.read(yaml: yaml, file: file, whenEmpty: "the file is empty; leave it out to run on the defaults") { root, r in
            var c = ConsoleConfiguration()
            c.file = file
            guard let fields = r.mapping(root, "", allowed: keys) else { return nil }
            for (key, v) in fields {
                switch key {
                case "listen":
                    if let s = r.scalar(v, key) {
                        if let (host, port) = parseListen(s) { c.listenHost = host; c.listenPort = port }
                        else { r.problem(v, key, "\"\(s)\" is not HOST:PORT (e.g. 127.0.0.1:9900 or 0.0.0.0:9900)") }
                    }
                case "database":
                    if let s = r.scalar(v, key) {
                        if s.hasPrefix("postgres://") || s.hasPrefix("postgresql://") { c.database = s }
                        else if s.hasPrefix("sqlite:") { c.database = "sqlite:" + resolve(String(s.dropFirst("sqlite:".count)), relativeTo: file) }
                        else { r.problem(v, key, "give sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE") }
                    }
                case "data_dir": if let s = r.scalar(v, key), !s.isEmpty { c.dataDirectory = resolve(s, relativeTo: file) }
                case "plans":
                    guard let items = r.sequence(v, key) else { continue }
                    for (i, item) in items.enumerated() { if let s = r.scalar(item, "\(key)[\(i)]") { c.plans.append(resolve(s, relativeTo: file)) } }
                case "poll_interval":
                    if let d = r.duration(v, key) { if d < .milliseconds(200) { r.problem(v, key, "at least 200ms") } else { c.pollInterval = d } }
                case "window":
                    if let d = r.duration(v, key) { if d < .seconds(10) { r.problem(v, key, "at least 10s") } else { c.window = d } }
                case "lease":
                    if let d = r.duration(v, key) { if d < .seconds(2) { r.problem(v, key, "at least 2s (runners report every quarter second)") } else { c.lease = d } }
                case "session_lifetime":
                    if let d = r.duration(v, key) { if d < .seconds(60) { r.problem(v, key, "at least 60s") } else { c.sessionLifetime = d } }
                case "anonymous_viewer":
                    if let s = r.scalar(v, key) {
                        guard s == "true" || s == "false" else { r.problem(v, key, "true or false"); continue }
                        c.anonymousViewer = s == "true"
                    }
                case "separate_approver":
                    guard let items = r.sequence(v, key) else { continue }
                    for (i, item) in items.enumerated() { if let s = r.scalar(item, "\(key)[\(i)]") { c.separateApprover.append(s) } }
                case "tls":
                    guard let tls = r.mapping(v, key, allowed: ["cert", "key"]) else { continue }
                    for (k, value) in tls {
                        guard let s = r.scalar(value, "tls.\(k)") else { continue }
                        if k == "cert" { c.tlsCertificate = resolve(s, relativeTo: file) } else { c.tlsKey = resolve(s, relativeTo: file) }
                    }
                    if (c.tlsCertificate == nil) != (c.tlsKey == nil) { r.problem(v, key, "give both cert and key (PEM files)") }
                default: break
                }
            }
            return c
        }
    }

    /// "127.0.0.1:9900", "[::1]:9900", ":9900" (loopback).
    public static func parseListen(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    /// Paths in the file are relative to the file's directory, as in the proxy's configuration.
    static func resolve(_ path: String, relativeTo file: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let directory = (file as NSString).deletingLastPathComponent
        return directory.isEmpty ? path : (directory as NSString).appendingPathComponent(path)
    }
}
