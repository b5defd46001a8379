import Foundation
import Yams

/// One thing wrong with a configuration file: where it is and what to do about it.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// Dotted key path, e.g. `pools.blue.servers[1].weight`.
    public var keyPath: String
    public var message: String

    public init(file: String, line: Int, column: Int, keyPath: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String {
        let location = line > 0 ? "\(file):\(line):\(column)" : file
        return keyPath.isEmpty ? "\(location): \(message)" : "\(location): \(keyPath): \(message)"
    }
}

/// Every problem found in a configuration file; loading reports them all at once.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigProblem]
    public init(problems: [ConfigProblem]) { self.problems = problems }
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Reads and validates the YAML configuration.
public enum ConfigLoader {
    /// Loads and validates the file at `path`.
    public static func load(path: String) throws(ConfigError) -> SwitchyardConfig {
        try NodeReader.load(path: path, what: "the file") { (text: String) throws(ConfigError) in try parse(yaml: text, file: path) }
    }

    /// Validates YAML text; `file` names it in error messages.
    public static func parse(yaml: String, file: String) throws(ConfigError) -> SwitchyardConfig {
        try NodeReader.read(yaml: yaml, file: file, whenEmpty: "the file is empty; it needs at least listeners, pools and services") { root, reader in
            reader.readRoot(root)
        }
    }
}

extension NodeReader {
    /// Reads the file at `path` and hands its text to `parse`; an unreadable file is one problem.
    public static func load<T>(path: String, what: String, _ parse: (String) throws(ConfigError) -> T) throws(ConfigError) -> T {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(problems: [ConfigProblem(file: path, line: 0, column: 0, keyPath: "",
                message: "cannot read \(what) (\(error.localizedDescription)); check the path and its permissions")])
        }
        return try parse(text)
    }

    /// Composes YAML and walks it with `read`, collecting every problem; throws them all,
    /// sorted by position, when there is any.
    public static func read<T>(yaml: String, file: String, whenEmpty: String,
                               _ read: (Node, inout NodeReader) -> T?) throws(ConfigError) -> T {
        var reader = NodeReader(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError(problems: [reader.yamlProblem(error)])
        } catch {
            throw ConfigError(problems: [ConfigProblem(file: file, line: 0, column: 0, keyPath: "", message: "invalid YAML: \(error)")])
        }
        guard let root else {
            throw ConfigError(problems: [ConfigProblem(file: file, line: 0, column: 0, keyPath: "", message: whenEmpty)])
        }
        let value = read(root, &reader)
        if !reader.problems.isEmpty || value == nil {
            throw ConfigError(problems: reader.problems.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
        }
        return value!
    }
}

/// Durations as the configuration and the admin API write them: `250ms`, `10s`, `2m`,
/// `1h`, or a bare number of seconds; from 0 up to `maximum`.
public enum DurationText {
    /// The longest duration accepted anywhere (a year): longer ones are refused rather than
    /// converted, so no arithmetic on a duration can overflow.
    public static let maximumMilliseconds: Int64 = 366 * 24 * 3_600_000
    public static let maximumDescription = "8784h (a year)"

    public static func parse(_ text: String) -> Duration? {
        guard let ms = milliseconds(text), ms <= maximumMilliseconds else { return nil }
        return .milliseconds(ms)
    }

    /// Whether `text` is a well-formed duration that is longer than `maximum`.
    public static func isTooLong(_ text: String) -> Bool {
        guard let ms = milliseconds(text) else { return false }
        return ms > maximumMilliseconds
    }

    /// Milliseconds, saturating at Int64.max; nil for anything that is not a duration.
    private static func milliseconds(_ text: String) -> Int64? {
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        var number = Substring(text)
        var factor = 1000.0
        for (suffix, f) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            factor = f
            break
        }
        // Digits and one point only: no signs, exponents, "inf" or "nan".
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              number.filter({ $0 == "." }).count <= 1, let value = Double(number), value.isFinite else { return nil }
        let ms = (value * factor).rounded(.down)
        return ms < 9.0e18 ? Int64(ms) : .max
    }
}

/// Walks the YAML node tree, collecting problems instead of stopping at the first.
/// Public so that other YAML documents (rollout plans) report problems the same way.
public struct NodeReader {
    public let file: String
    public var problems: [ConfigProblem] = []

    public init(file: String) { self.file = file }

    public mutating func problem(_ node: Node?, _ path: String, _ message: String) {
        let mark = node?.mark
        problems.append(ConfigProblem(file: file, line: mark?.line ?? 0, column: mark?.column ?? 0,
                                      keyPath: path, message: message))
    }

    public func yamlProblem(_ error: YamlError) -> ConfigProblem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return ConfigProblem(file: file, line: mark.line, column: mark.column, keyPath: "",
                                 message: "invalid YAML: \(problem)")
        default:
            return ConfigProblem(file: file, line: 0, column: 0, keyPath: "", message: "invalid YAML: \(error)")
        }
    }

    /// The pairs of a mapping, after checking that every key is one of `allowed`.
    public mutating func mapping(_ node: Node, _ path: String, allowed: [String]) -> [(key: String, value: Node)]? {
        guard case .mapping(let m) = node else {
            problem(node, path, "expected a mapping (key: value pairs)")
            return nil
        }
        var result: [(String, Node)] = []
        var seen = Set<String>()
        for (k, v) in m {
            guard case .scalar(let s) = k else { problem(k, path, "keys must be plain strings"); continue }
            let key = s.string
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            if !allowed.isEmpty && !allowed.contains(key) {
                problem(k, keyPath, "unknown key; expected one of: \(allowed.joined(separator: ", "))")
                continue
            }
            if !seen.insert(key).inserted { problem(k, keyPath, "key appears twice"); continue }
            result.append((key, v))
        }
        return result
    }

    public mutating func scalar(_ node: Node, _ path: String) -> String? {
        guard case .scalar(let s) = node else { problem(node, path, "expected a single value"); return nil }
        return s.string
    }

    public mutating func integer(_ node: Node, _ path: String, range: ClosedRange<Int>) -> Int? {
        guard let text = scalar(node, path) else { return nil }
        guard let value = Int(text) else { problem(node, path, "\"\(text)\" is not a whole number"); return nil }
        guard range.contains(value) else {
            problem(node, path, "\(value) is out of range; use a value from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return value
    }

    /// Durations: `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
    public mutating func duration(_ node: Node, _ path: String) -> Duration? {
        guard let text = scalar(node, path) else { return nil }
        if let d = Self.parseDuration(text) { return d }
        if DurationText.isTooLong(text) {
            problem(node, path, "\"\(text)\" is too long; the longest duration accepted is \(DurationText.maximumDescription)")
            return nil
        }
        problem(node, path, "\"\(text)\" is not a duration; write e.g. 500ms, 10s, 2m or 1h")
        return nil
    }

    static func parseDuration(_ text: String) -> Duration? { DurationText.parse(text) }

    public mutating func sequence(_ node: Node, _ path: String) -> [Node]? {
        guard case .sequence(let s) = node else { problem(node, path, "expected a list"); return nil }
        return Array(s)
    }

    // MARK: The schema

    static let rootKeys = ["workers", "listeners", "pools", "services", "access_log", "limits", "timeouts",
                           "shutdown_timeout", "admin", "state_file", "takeover_socket", "resolvers", "resolve",
                           "observability", "log_format", "metrics"]

    mutating func readRoot(_ root: Node) -> SwitchyardConfig? {
        guard let pairs = mapping(root, "", allowed: Self.rootKeys) else { return nil }
        var config = SwitchyardConfig(workers: nil, listeners: [], pools: [], services: [],
                                      accessLog: .stdout, limits: Limits(), timeouts: Timeouts(),
                                      shutdownTimeout: .seconds(30), admin: nil, stateFile: nil)
        var poolsNode: Node? = nil, servicesNode: Node? = nil, listenersNode: Node? = nil, resolveNode: Node? = nil
        for (key, value) in pairs {
            switch key {
            case "workers":
                if scalar(value, key) == "auto" { config.workers = nil }
                else { config.workers = integer(value, key, range: 1...256) }
            case "listeners": listenersNode = value
            case "pools": poolsNode = value
            case "services": servicesNode = value
            case "access_log":
                if let text = scalar(value, key) {
                    switch text {
                    case "off": config.accessLog = .off
                    case "stdout": config.accessLog = .stdout
                    case "": problem(value, key, "empty; use stdout, off or a file path")
                    default: config.accessLog = .file(text)
                    }
                }
            case "limits": config.limits = readLimits(value)
            case "resolvers": config.resolver.servers = readResolvers(value)
            case "resolve": resolveNode = value
            case "timeouts": config.timeouts = readTimeouts(value)
            case "shutdown_timeout": config.shutdownTimeout = duration(value, key) ?? config.shutdownTimeout
            case "admin": config.admin = readAdmin(value)
            case "observability": config.observability = readObservability(value)
            case "metrics": config.metrics = readMetrics(value)
            case "log_format":
                if let text = scalar(value, key) {
                    if let format = LogFormat(rawValue: text) { config.logFormat = format }
                    else { problem(value, key, "\"\(text)\" is not a log format; use text or json") }
                }
            case "takeover_socket":
                if let path = scalar(value, key) {
                    if path.isEmpty || path.utf8.count > 100 { problem(value, key, "give a Unix socket path of at most 100 bytes") }
                    else { config.takeoverSocket = path }
                }
            case "state_file":
                if let path = scalar(value, key) {
                    if path.isEmpty { problem(value, key, "empty; give a file path, e.g. /var/lib/switchyard/state.json") }
                    else { config.stateFile = path }
                }
            default: break
            }
        }
        if let listenersNode { config.listeners = readListeners(listenersNode) }
        else { problem(root, "listeners", "missing; add at least one listener, e.g. listeners: [{bind: 127.0.0.1:8080}]") }
        // Before the pools: their own `resolve` starts from these defaults.
        if let resolveNode { readResolve(resolveNode, into: &config) }
        if let poolsNode { config.pools = readPools(poolsNode, resolveDefaults: config.resolve) }
        else { problem(root, "pools", "missing; define at least one pool of servers") }
        if let servicesNode { config.services = readServices(servicesNode, pools: config.pools) }
        else { problem(root, "services", "missing; define at least one service that names a pool") }
        if let observability = config.observability, let node = pairs.first(where: { $0.key == "observability" })?.value {
            checkObservabilityBind(observability.bind, node: node, config: config)
        }
        return config
    }

    /// `observability: { bind: 127.0.0.1:9100 }`.
    mutating func readObservability(_ node: Node) -> ObservabilityConfig? {
        guard let pairs = mapping(node, "observability", allowed: ["bind"]) else { return nil }
        guard let bindNode = pairs.first(where: { $0.key == "bind" })?.value else {
            problem(node, "observability.bind", "missing; give the address to serve /metrics, /ready and /live on, e.g. 127.0.0.1:9100")
            return nil
        }
        guard let address = socketAddress(bindNode, "observability.bind") else { return nil }
        return ObservabilityConfig(bind: address)
    }

    /// `metrics: { server_histograms: true }`.
    mutating func readMetrics(_ node: Node) -> MetricsConfig {
        var metrics = MetricsConfig()
        guard let pairs = mapping(node, "metrics", allowed: ["server_histograms"]) else { return metrics }
        for (key, value) in pairs where key == "server_histograms" {
            guard let text = scalar(value, "metrics.server_histograms") else { continue }
            guard text == "true" || text == "false" else { problem(value, "metrics.server_histograms", "true or false"); continue }
            metrics.serverHistograms = text == "true"
        }
        return metrics
    }

    /// The observability listener may not take an address another listener of the file has.
    mutating func checkObservabilityBind(_ address: SocketAddress, node: Node, config: SwitchyardConfig) {
        let path = "observability.bind"
        if config.listeners.contains(where: { $0.bind == address }) {
            problem(node, path, "\(address) is also a listener's address; give the observability listener a port of its own, e.g. 127.0.0.1:9100")
        }
        if let tcp = config.admin?.tcp, tcp == address {
            problem(node, path, "\(address) is also admin.tcp; give the observability listener a port of its own")
        }
    }

    mutating func readListeners(_ node: Node) -> [ListenerConfig] {
        guard let items = sequence(node, "listeners") else { return [] }
        if items.isEmpty { problem(node, "listeners", "empty; add at least one listener") }
        var result: [ListenerConfig] = []
        var seen = Set<SocketAddress>()
        for (i, item) in items.enumerated() {
            let path = "listeners[\(i)]"
            guard let pairs = mapping(item, path, allowed: ["bind", "tls"]) else { continue }
            guard let bindNode = pairs.first(where: { $0.key == "bind" })?.value else {
                problem(item, "\(path).bind", "missing; give the address to listen on, e.g. 127.0.0.1:8080")
                continue
            }
            guard let address = socketAddress(bindNode, "\(path).bind", allowsAnyPort: true) else { continue }
            if !seen.insert(address).inserted { problem(bindNode, "\(path).bind", "\(address) is listed twice") }
            var listener = ListenerConfig(bind: address)
            if let tlsNode = pairs.first(where: { $0.key == "tls" })?.value { listener.tls = readTLS(tlsNode, path: "\(path).tls") }
            result.append(listener)
        }
        return result
    }

    mutating func socketAddress(_ node: Node, _ path: String, allowsAnyPort: Bool = false) -> SocketAddress? {
        guard let text = scalar(node, path) else { return nil }
        guard let address = SocketAddress(parsing: text, allowsAnyPort: allowsAnyPort) else {
            problem(node, path, "\"\(text)\" is not a valid address; write IPv4:port, [IPv6]:port or localhost:port (port 1-65535)")
            return nil
        }
        return address
    }

    mutating func readPools(_ node: Node, resolveDefaults: ResolvePolicy = ResolvePolicy()) -> [PoolConfig] {
        guard let pairs = mapping(node, "pools", allowed: []) else { return [] }
        if pairs.isEmpty { problem(node, "pools", "empty; define at least one pool") }
        var result: [PoolConfig] = []
        for (name, value) in pairs {
            let path = "pools.\(name)"
            if !Self.isValidName(name) {
                problem(value, path, "pool names may use \(FieldRules.nameRule)")
            }
            guard let fields = mapping(value, path, allowed: ["balance", "servers", "health", "outlier_detection", "retries", "slow_start", "tls", "resolve"]) else { continue }
            var pool = PoolConfig(name: name, balance: .roundRobin, servers: [])
            pool.resolve = resolveDefaults
            var hasServers = false
            for (key, v) in fields {
                switch key {
                case "balance":
                    if let text = scalar(v, "\(path).balance") {
                        if let algorithm = BalanceAlgorithm(rawValue: text) { pool.balance = algorithm }
                        else {
                            problem(v, "\(path).balance", "unknown algorithm \"\(text)\"; use round_robin or least_request")
                        }
                    }
                case "servers":
                    hasServers = true
                    (pool.servers, pool.namedServers) = readServers(v, path: "\(path).servers")
                case "health":
                    pool.health = readHealth(v, path: "\(path).health")
                case "resolve":
                    pool.resolve = readResolvePolicy(v, path: "\(path).resolve", allowed: ["interval", "family"], defaults: resolveDefaults)
                case "retries":
                    pool.retries = integer(v, "\(path).retries", range: 0...10) ?? pool.retries
                case "tls":
                    guard let t = mapping(v, "\(path).tls", allowed: ["enabled", "ca", "server_name", "verify", "client_cert", "client_key"]) else { continue }
                    var tls = UpstreamTLSConfig()
                    var enabled = true
                    for (tk, tv) in t {
                        let keyPath = "\(path).tls.\(tk)"
                        guard let text = scalar(tv, keyPath) else { continue }
                        switch tk {
                        case "enabled", "verify":
                            guard text == "true" || text == "false" else { problem(tv, keyPath, "true or false"); continue }
                            if tk == "enabled" { enabled = text == "true" } else { tls.verify = text == "true" }
                        case "ca": tls.ca = text
                        case "server_name": tls.serverName = text
                        case "client_cert": tls.clientCert = text
                        case "client_key": tls.clientKey = text
                        default: break
                        }
                    }
                    if (tls.clientCert == nil) != (tls.clientKey == nil) {
                        problem(v, "\(path).tls", "client_cert and client_key go together")
                    }
                    pool.tls = enabled ? tls : nil
                case "slow_start":
                    if let d = duration(v, "\(path).slow_start") { pool.slowStart = d.milliseconds > 0 ? d : nil }
                case "outlier_detection":
                    if case .scalar(let text) = v, text.string == "off" { pool.outlierDetection = nil; continue }
                    guard let o = mapping(v, "\(path).outlier_detection",
                                          allowed: ["consecutive_failures", "base_ejection_time", "max_ejection_percent"]) else { continue }
                    var od = OutlierDetectionConfig()
                    for (ok, ov) in o {
                        let keyPath = "\(path).outlier_detection.\(ok)"
                        switch ok {
                        case "consecutive_failures": od.consecutiveFailures = integer(ov, keyPath, range: 1...1000) ?? od.consecutiveFailures
                        case "base_ejection_time":
                            if let d = duration(ov, keyPath) {
                                if d.milliseconds >= 100 { od.baseEjectionTime = d } else { problem(ov, keyPath, "must be at least 100ms") }
                            }
                        case "max_ejection_percent": od.maxEjectionPercent = integer(ov, keyPath, range: 0...100) ?? od.maxEjectionPercent
                        default: break
                        }
                    }
                    pool.outlierDetection = od
                default: break
                }
            }
            if !hasServers { problem(value, "\(path).servers", "missing; list the pool's servers") }
            result.append(pool)
        }
        return result
    }

    /// The servers given by address, and those given by DNS name.
    mutating func readServers(_ node: Node, path: String) -> ([ServerConfig], [NamedServerConfig]) {
        guard let items = sequence(node, path) else { return ([], []) }
        var result: [ServerConfig] = []
        var named: [NamedServerConfig] = []
        var names = Set<String>()
        for (i, item) in items.enumerated() {
            let itemPath = "\(path)[\(i)]"
            guard let fields = mapping(item, itemPath, allowed: ["address", "weight", "name"]) else { continue }
            var address: ServerTarget? = nil
            var weight = 100
            var name: String? = nil
            for (key, v) in fields {
                switch key {
                case "address": address = serverTarget(v, "\(itemPath).address")
                case "weight": weight = integer(v, "\(itemPath).weight", range: 0...ServerConfig.maxWeight) ?? weight
                case "name":
                    name = scalar(v, "\(itemPath).name")
                    if let n = name, !Self.isValidName(n) {
                        problem(v, "\(itemPath).name", "server names may use \(FieldRules.nameRule)")
                    }
                default: break
                }
            }
            guard fields.contains(where: { $0.key == "address" }) else {
                problem(item, "\(itemPath).address", "missing; give the server's address, e.g. 127.0.0.1:9001")
                continue
            }
            guard let address else { continue }
            let serverName = name ?? address.description
            if !names.insert(serverName).inserted {
                problem(item, itemPath, "server \"\(serverName)\" appears twice in this pool")
            }
            switch address {
            case .address(let a): result.append(ServerConfig(name: serverName, address: a, weight: weight))
            case .name(let target): named.append(NamedServerConfig(name: serverName, target: target, weight: weight))
            }
        }
        return (result, named)
    }

    mutating func readServices(_ node: Node, pools: [PoolConfig]) -> [ServiceConfig] {
        guard let pairs = mapping(node, "services", allowed: []) else { return [] }
        if pairs.isEmpty { problem(node, "services", "empty; define at least one service") }
        var result: [ServiceConfig] = []
        var defaults: [String] = []
        let poolNames = pools.map(\.name)
        for (name, value) in pairs {
            let path = "services.\(name)"
            guard let fields = mapping(value, path, allowed: ["match", "active", "standby", "preview", "canary", "rules"]) else { continue }
            var service = ServiceConfig(name: name, match: nil, active: "")
            func poolName(_ v: Node, _ keyPath: String) -> String? {
                guard let pool = scalar(v, keyPath) else { return nil }
                if poolNames.contains(pool) { return pool }
                problem(v, keyPath, "names pool \"\(pool)\", which is not defined; defined pools: \(poolNames.joined(separator: ", "))")
                return nil
            }
            for (key, v) in fields {
                switch key {
                case "active": service.active = poolName(v, "\(path).active") ?? ""
                case "standby": service.standby = poolName(v, "\(path).standby")
                case "match": service.match = readMatch(v, path: "\(path).match")
                case "preview": service.preview = readPreview(v, path: "\(path).preview")
                case "canary":
                    guard let c = mapping(v, "\(path).canary", allowed: ["pool", "weight", "sticky", "guard"]) else { continue }
                    var canary = CanaryConfig(pool: "", weight: 0, sticky: nil)
                    for (ck, cv) in c {
                        switch ck {
                        case "pool": canary.pool = poolName(cv, "\(path).canary.pool") ?? ""
                        case "weight": canary.weight = basisPoints(cv, "\(path).canary.weight") ?? 0
                        case "sticky": canary.sticky = readSticky(cv, path: "\(path).canary.sticky")
                        case "guard": canary.guardrail = readGuard(cv, path: "\(path).canary.guard")
                        default: break
                        }
                    }
                    if !c.contains(where: { $0.key == "pool" }) { problem(v, "\(path).canary.pool", "missing; name the canary pool") }
                    service.canary = canary
                case "rules":
                    guard let items = sequence(v, "\(path).rules") else { continue }
                    for (i, item) in items.enumerated() {
                        let rulePath = "\(path).rules[\(i)]"
                        guard let r = mapping(item, rulePath, allowed: ["header", "cookie", "value", "pool"]) else { continue }
                        let header = r.first { $0.key == "header" }, cookie = r.first { $0.key == "cookie" }
                        guard (header == nil) != (cookie == nil) else {
                            problem(item, rulePath, "give exactly one of header or cookie"); continue
                        }
                        guard let valueNode = r.first(where: { $0.key == "value" })?.value, let value = scalar(valueNode, "\(rulePath).value") else {
                            problem(item, "\(rulePath).value", "missing; the value to match exactly"); continue
                        }
                        guard let poolNode = r.first(where: { $0.key == "pool" })?.value else {
                            problem(item, "\(rulePath).pool", "missing; the pool that matching requests go to"); continue
                        }
                        guard let pool = poolName(poolNode, "\(rulePath).pool") else { continue }
                        let kindNode = (header ?? cookie)!
                        guard let name = scalar(kindNode.value, "\(rulePath).\(kindNode.key)") else { continue }
                        guard FieldRules.isValidFieldName(name) else {
                            problem(kindNode.value, "\(rulePath).\(kindNode.key)", "\"\(name)\" is not a valid \(kindNode.key) name; use \(FieldRules.fieldNameRule)")
                            continue
                        }
                        guard FieldRules.isValidFieldValue(value) else {
                            problem(valueNode, "\(rulePath).value", FieldRules.fieldValueRule); continue
                        }
                        service.rules.append(RouteRule(kind: header != nil ? .header : .cookie, name: name, value: value, pool: pool))
                    }
                default: break
                }
            }
            if service.preview != nil && service.standby == nil {
                problem(value, "\(path).preview", "needs a standby pool to send preview requests to; add standby")
            }
            if !fields.contains(where: { $0.key == "active" }) {
                problem(value, "\(path).active", "missing; name the pool that serves this service")
            }
            if service.match == nil { defaults.append(name) }
            result.append(service)
        }
        if defaults.count > 1 {
            problem(node, "services", "more than one default service (without match): \(defaults.joined(separator: ", ")); give all but one a match")
        }
        return result
    }

    mutating func readTLS(_ node: Node, path: String) -> TLSListenerConfig? {
        guard let fields = mapping(node, path, allowed: ["certificates", "min_version", "alpn", "client_ca", "session_ticket_rotation"]) else { return nil }
        var tls = TLSListenerConfig(certificates: [])
        for (key, v) in fields {
            switch key {
            case "certificates":
                guard let items = sequence(v, "\(path).certificates") else { continue }
                for (i, item) in items.enumerated() {
                    let itemPath = "\(path).certificates[\(i)]"
                    guard let c = mapping(item, itemPath, allowed: ["cert", "key"]) else { continue }
                    guard let certNode = c.first(where: { $0.key == "cert" })?.value, let cert = scalar(certNode, "\(itemPath).cert"),
                          let keyNode = c.first(where: { $0.key == "key" })?.value, let key = scalar(keyNode, "\(itemPath).key") else {
                        problem(item, itemPath, "needs cert and key (PEM file paths)")
                        continue
                    }
                    tls.certificates.append(.init(cert: cert, key: key))
                    tls.lines[cert] = certNode.mark?.line ?? 0
                    tls.lines[key] = keyNode.mark?.line ?? 0
                }
            case "client_ca":
                if let file = scalar(v, "\(path).client_ca") { tls.clientCA = file; tls.lines[file] = v.mark?.line ?? 0 }
            case "session_ticket_rotation":
                if let d = duration(v, "\(path).session_ticket_rotation") {
                    if d.milliseconds >= 1000 { tls.sessionTicketRotation = d }
                    else { problem(v, "\(path).session_ticket_rotation", "must be at least 1s") }
                }
            case "min_version":
                if let text = scalar(v, "\(path).min_version") {
                    if text == "1.2" || text == "1.3" { tls.minVersion = text }
                    else { problem(v, "\(path).min_version", "\"\(text)\" is not supported; use \"1.2\" or \"1.3\" (older versions are refused)") }
                }
            case "alpn":
                guard let items = sequence(v, "\(path).alpn") else { continue }
                tls.alpn = items.enumerated().compactMap { scalar($0.element, "\(path).alpn[\($0.offset)]") }
                if tls.alpn.contains(where: { $0 != "http/1.1" && $0 != "http/1.0" }) {
                    problem(v, "\(path).alpn", "only http/1.1 (and http/1.0) are served; HTTP/2 is not supported yet")
                }
            default: break
            }
        }
        if tls.certificates.isEmpty { problem(node, "\(path).certificates", "give at least one {cert, key}; the first is the default") }
        return tls
    }

    mutating func readHealth(_ node: Node, path: String) -> HealthCheckConfig? {
        guard let fields = mapping(node, path, allowed: ["path", "interval", "timeout", "rise", "fall", "expect", "adapt_weight", "overload_cpu"]) else { return nil }
        var h = HealthCheckConfig()
        for (key, v) in fields {
            let keyPath = "\(path).\(key)"
            switch key {
            case "path":
                if let p = scalar(v, keyPath) {
                    if p.hasPrefix("/") && !p.contains(" ") { h.path = p } else { problem(v, keyPath, "must start with / and contain no spaces") }
                }
            case "interval", "timeout":
                guard let d = duration(v, keyPath) else { continue }
                if d.milliseconds < 10 { problem(v, keyPath, "must be at least 10ms"); continue }
                if key == "interval" { h.interval = d } else { h.timeout = d }
            case "adapt_weight":
                guard let text = scalar(v, keyPath) else { continue }
                if text == "true" || text == "false" { h.adaptWeight = text == "true" } else { problem(v, keyPath, "true or false") }
            case "overload_cpu":
                if let text = scalar(v, keyPath), let bp = BasisPoints.parse(text), bp > 0 { h.overloadCPU = Double(bp) / 10000 }
                else { problem(v, keyPath, "a percentage such as 90%") }
            case "rise": h.rise = integer(v, keyPath, range: 1...100) ?? h.rise
            case "fall": h.fall = integer(v, keyPath, range: 1...100) ?? h.fall
            case "expect":
                guard let text = scalar(v, keyPath) else { continue }
                let parts = text.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                if parts.count == 1, let one = parts[0], (100...599).contains(one) { h.expect = one...one }
                else if parts.count == 2, let a = parts[0], let b = parts[1], 100 <= a, a <= b, b <= 599 { h.expect = a...b }
                else { problem(v, keyPath, "\"\(text)\" is not a status or a range; write e.g. 200 or 200-399") }
            default: break
            }
        }
        if !fields.contains(where: { $0.key == "timeout" }) {
            h.timeout = min(h.timeout, h.interval) // the default never outlasts a shorter interval
        } else if h.timeout > h.interval {
            problem(node, "\(path).timeout", "must not be longer than interval (\(h.interval.milliseconds)ms)")
        }
        return h
    }

    public mutating func basisPoints(_ node: Node, _ path: String) -> Int? {
        guard let text = scalar(node, path) else { return nil }
        if let value = BasisPoints.parse(text) { return value }
        problem(node, path, "\"\(text)\" is not a weight; write a percentage from 0% to 100% in steps of 0.01%, e.g. 2.5%")
        return nil
    }

    /// `{max_error_rate: 50%, min_requests: 20, window: 10s}`; only the rate is required.
    public mutating func readGuard(_ node: Node, path: String) -> CanaryGuard? {
        guard let fields = mapping(node, path, allowed: ["max_error_rate", "min_requests", "window"]) else { return nil }
        var result = CanaryGuard(maxErrorRate: 0, minRequests: CanaryGuard.defaultMinRequests,
                                 windowMilliseconds: CanaryGuard.defaultWindowMilliseconds)
        for (key, v) in fields {
            switch key {
            case "max_error_rate":
                if let bp = basisPoints(v, "\(path).max_error_rate") {
                    if bp == 0 { problem(v, "\(path).max_error_rate", "0% would trip on the first error; use e.g. 20%") }
                    result.maxErrorRate = bp
                }
            case "min_requests": result.minRequests = integer(v, "\(path).min_requests", range: 1...1_000_000) ?? result.minRequests
            case "window":
                if let d = duration(v, "\(path).window") {
                    if d.milliseconds < 100 { problem(v, "\(path).window", "too short; the guard looks every 100ms, use at least 1s") }
                    result.windowMilliseconds = d.milliseconds
                }
            default: break
            }
        }
        if !fields.contains(where: { $0.key == "max_error_rate" }) {
            problem(node, "\(path).max_error_rate", "missing; the error rate that trips the guard, e.g. 20%")
            return nil
        }
        return result
    }

    mutating func readSticky(_ node: Node, path: String) -> StickyKey? {
        guard let fields = mapping(node, path, allowed: ["cookie", "header", "client_ip"]), fields.count == 1 else {
            problem(node, path, "give exactly one of cookie: NAME, header: NAME or client_ip: true")
            return nil
        }
        let (key, v) = fields[0]
        guard let text = scalar(v, "\(path).\(key)") else { return nil }
        switch key {
        case "cookie", "header":
            guard FieldRules.isValidFieldName(text) else {
                problem(v, "\(path).\(key)", "\"\(text)\" is not a valid \(key) name; use \(FieldRules.fieldNameRule)")
                return nil
            }
            return key == "cookie" ? .cookie(text) : .header(text)
        default:
            guard text == "true" else { problem(v, "\(path).client_ip", "only true is meaningful here"); return nil }
            return .clientIP
        }
    }

    mutating func readPreview(_ node: Node, path: String) -> PreviewConfig? {
        guard let fields = mapping(node, path, allowed: ["header", "value_file"]) else { return nil }
        guard let headerNode = fields.first(where: { $0.key == "header" })?.value, let header = scalar(headerNode, "\(path).header"),
              let fileNode = fields.first(where: { $0.key == "value_file" })?.value, let file = scalar(fileNode, "\(path).value_file") else {
            problem(node, path, "needs header and value_file")
            return nil
        }
        guard let token = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            problem(fileNode, "\(path).value_file", "cannot read a token from \(file); put the preview token (one line) in that file")
            return nil
        }
        return PreviewConfig(header: header, valueFile: file, token: token)
    }

    mutating func readAdmin(_ node: Node) -> AdminConfig? {
        guard let fields = mapping(node, "admin", allowed: ["socket", "tcp", "tokens_file", "tls", "client_roles"]) else { return nil }
        var admin = AdminConfig(socket: nil, tcp: nil, tokens: [:], tokensFile: nil)
        for (key, v) in fields {
            switch key {
            case "socket":
                guard let path = scalar(v, "admin.socket"), !path.isEmpty else { continue }
                if path.utf8.count > 100 { problem(v, "admin.socket", "path too long for a Unix socket (100 bytes at most)") }
                admin.socket = path
            case "tcp":
                guard let address = socketAddress(v, "admin.tcp") else { continue }
                admin.tcp = address
            case "tls":
                admin.tls = readTLS(v, path: "admin.tls")
            case "client_roles":
                guard let roles = mapping(v, "admin.client_roles", allowed: ["operate", "read"]) else { continue }
                var result = AdminClientRoles()
                for (role, list) in roles {
                    guard let items = sequence(list, "admin.client_roles.\(role)") else { continue }
                    for (i, item) in items.enumerated() {
                        guard let name = scalar(item, "admin.client_roles.\(role)[\(i)]") else { continue }
                        if name.isEmpty || name.utf8.count > 255 {
                            problem(item, "admin.client_roles.\(role)[\(i)]", "give a certificate common name (1 to 255 bytes)")
                        } else if role == "operate" { result.operate.insert(name) } else { result.read.insert(name) }
                    }
                }
                admin.clientRoles = result
            case "tokens_file":
                guard let path = scalar(v, "admin.tokens_file") else { continue }
                admin.tokensFile = path
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    problem(v, "admin.tokens_file", "cannot read \(path); it holds one token per line: NAME TOKEN")
                    continue
                }
                for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let line = raw.trimmingCharacters(in: .whitespaces)
                    if line.isEmpty || line.hasPrefix("#") { continue }
                    let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                    guard parts.count == 2, parts[1].count >= 16 else {
                        problem(v, "admin.tokens_file", "\(path) line \(i + 1): expected NAME TOKEN with a token of at least 16 characters")
                        continue
                    }
                    admin.tokens[String(parts[0])] = String(parts[1])
                }
            default: break
            }
        }
        if admin.socket == nil && admin.tcp == nil {
            problem(node, "admin", "give socket (a Unix socket path) and/or tcp (a loopback address)")
        }
        if admin.clientRoles != nil && admin.tls?.clientCA == nil {
            problem(node, "admin.client_roles", "names client certificates, so it needs admin.tls.client_ca")
        }
        if let tcp = admin.tcp {
            let loopback = tcp.family == .ipv4 ? tcp.host.hasPrefix("127.") : tcp.host == "::1"
            if !loopback && admin.tls == nil {
                problem(node, "admin.tcp", "\(tcp) is not a loopback address; without admin.tls the TCP admin listener must be bound to 127.0.0.1 or [::1]")
            }
            if admin.tokens.isEmpty && admin.tls?.clientCA == nil {
                problem(node, "admin.tokens_file", "the TCP listener needs a way to authenticate: tokens_file (lines NAME TOKEN) and/or admin.tls.client_ca")
            }
        }
        return admin
    }

    mutating func readMatch(_ node: Node, path: String) -> MatchConfig? {
        guard let fields = mapping(node, path, allowed: ["hosts", "path_prefix"]) else { return nil }
        var match = MatchConfig(hosts: [], pathPrefix: "/")
        for (key, v) in fields {
            switch key {
            case "hosts":
                guard let items = sequence(v, "\(path).hosts") else { continue }
                for (i, item) in items.enumerated() {
                    guard let host = scalar(item, "\(path).hosts[\(i)]") else { continue }
                    let lowered = host.lowercased()
                    let bare = lowered.hasPrefix("*.") ? String(lowered.dropFirst(2)) : lowered
                    if bare.isEmpty || !bare.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }) {
                        problem(item, "\(path).hosts[\(i)]", "\"\(host)\" is not a host name; write example.com or *.example.com")
                    } else {
                        match.hosts.append(lowered)
                    }
                }
            case "path_prefix":
                if let prefix = scalar(v, "\(path).path_prefix") {
                    if prefix.hasPrefix("/") { match.pathPrefix = prefix }
                    else { problem(v, "\(path).path_prefix", "must start with /") }
                }
            default: break
            }
        }
        return match
    }

    mutating func readLimits(_ node: Node) -> Limits {
        var limits = Limits()
        guard let fields = mapping(node, "limits", allowed: ["max_header_bytes", "max_headers", "max_connections",
                                                             "max_request_line"]) else { return limits }
        for (key, v) in fields {
            let path = "limits.\(key)"
            switch key {
            case "max_header_bytes": limits.maxHeaderBytes = integer(v, path, range: 1024...1_048_576) ?? limits.maxHeaderBytes
            case "max_headers": limits.maxHeaders = integer(v, path, range: 8...1000) ?? limits.maxHeaders
            case "max_connections": limits.maxConnections = integer(v, path, range: 1...1_000_000) ?? limits.maxConnections
            case "max_request_line": limits.maxRequestLine = integer(v, path, range: 256...1_048_576) ?? limits.maxRequestLine
            default: break
            }
        }
        if limits.maxRequestLine > limits.maxHeaderBytes { limits.maxRequestLine = limits.maxHeaderBytes }
        return limits
    }

    mutating func readTimeouts(_ node: Node) -> Timeouts {
        var t = Timeouts()
        guard let fields = mapping(node, "timeouts", allowed: ["client_header", "client_idle", "upstream_connect",
                                                               "upstream_response", "upstream_idle", "tunnel_drain"]) else { return t }
        for (key, v) in fields {
            let path = "timeouts.\(key)"
            guard let d = duration(v, path) else { continue }
            if d.milliseconds < 1 { problem(v, path, "must be at least 1ms"); continue }
            switch key {
            case "client_header": t.clientHeader = d
            case "client_idle": t.clientIdle = d
            case "upstream_connect": t.upstreamConnect = d
            case "upstream_response": t.upstreamResponse = d
            case "upstream_idle": t.upstreamIdle = d
            case "tunnel_drain": t.tunnelDrain = d
            default: break
            }
        }
        return t
    }

    static func isValidName(_ name: String) -> Bool { FieldRules.isValidName(name) }
}
