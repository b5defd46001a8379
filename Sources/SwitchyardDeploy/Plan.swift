import Foundation
import SwitchyardAdminClient
import SwitchyardConfig
import Yams

/// A rollout plan: one service, promoted through environments in order.
public struct DeployPlan: Sendable {
    public var path: String
    public var service: String
    public var environments: [Environment]
    public var analysis: Analysis
    public var hooks: Hooks
    public var notify: [NotifyTarget]
    /// SQLite file (relative paths are relative to the working directory, as in a pipeline).
    public var history: String
    /// How long a proxy keeps the deploy lock without renewal; renewed every third of it.
    public var lockTTL: Duration
    /// Create a git tag named after the version when every environment succeeded.
    public var gitTag: Bool
    /// The remote (a name such as `origin`, or a URL) the tag `git_tag` creates is pushed to.
    public var gitPush: String?

    public enum Strategy: String, Sendable, CaseIterable { case bluegreen, canary, rolling }

    /// How the admin API of one proxy is reached.
    /// Where a proxy's admin API listens (the admin client's type, shared with `switchyard ctl --admin`).
    public typealias AdminAddress = SwitchyardAdminClient.AdminAddress

    public enum Step: Sendable, Equatable {
        /// Canary share in basis points.
        case weight(Int)
        /// Wait (analysis runs meanwhile); `nil` waits for `deploy promote`.
        case pause(Duration?)
    }

    public enum RollbackMode: Sendable, Equatable {
        case instant
        /// Halve the canary weight every `interval` down to 0.
        case gradual(interval: Duration)
    }

    /// How many servers of a rolling update's pool are out of rotation at once (like
    /// Kubernetes' maxUnavailable): a count, or a share of the servers in rotation.
    public enum Batch: Sendable, Equatable {
        case servers(Int)
        /// Basis points of the servers in rotation when the update starts, rounded down, at least one.
        case share(Int)

        /// The batch size for a pool with `servers` servers in rotation: at least 1.
        public func size(of servers: Int) -> Int {
            switch self {
            case .servers(let count): return max(1, count)
            case .share(let basisPoints):
                let (product, overflow) = servers.multipliedReportingOverflow(by: basisPoints)
                return max(1, overflow ? servers : product / 10_000)
            }
        }
    }

    public struct Environment: Sendable {
        public var name: String
        /// Every proxy of the environment (an HA pair, a fleet), sorted by address: the order in
        /// which they are locked and changed, the same for every rollout.
        public var proxies: [AdminAddress]
        /// Bearer token for a TCP admin listener: read from this variable (default
        /// `SWITCHYARD_TOKEN_<NAME>`) or from `tokenFile`.
        public var tokenEnv: String
        public var tokenFile: String?
        /// CA bundle that signs an https admin listener's certificate (default: system roots).
        public var ca: String?
        /// The name an https admin listener's certificate is verified against (and sent as
        /// SNI) when the address in `admin` is not that name.
        public var tlsServerName: String?
        public var strategy: Strategy
        public var manualApproval: Bool
        public var steps: [Step]
        /// The pool receiving the new version; default: the standby (blue/green, canary) or active (rolling) pool.
        public var pool: String?
        public var previewURL: String?
        /// Blue/green: analysis of the new active pool after the flip.
        public var watch: Duration?
        /// Blue/green: the previous pool stays as standby, watched, this long after the flip.
        public var keepPrevious: Duration
        public var drainTimeout: Duration
        public var healthTimeout: Duration
        public var guardrail: CanaryGuard?
        public var rollback: RollbackMode
        /// Rolling: servers updated at once (default one).
        public var batch: Batch?
        /// After the environment is promoted, analysis keeps watching this long before the
        /// next environment starts; a failure puts the previous version back.
        public var bake: Duration?
        /// Run in this environment's turn, after its approval and before its traffic moves.
        public var preDeploy: [String] = []
        /// Run once the environment is promoted (and its bake passed); a failure is reported.
        public var postPromote: [String] = []

        /// The first proxy, by address: the one tools that watch a single proxy per
        /// environment (the console's live view) look at.
        public var admin: AdminAddress { proxies.first ?? .unix(path: "/") }
    }

    public struct Analysis: Sendable {
        public var interval: Duration = .seconds(30)
        public var minRequests = 100
        /// Basis points of 5xx and failed exchanges.
        public var maxErrorRate: Int?
        /// Canary error rate allowed as a multiple of the baseline's.
        public var maxErrorRateVsBaseline: Double?
        public var maxP99: Duration?
        public var failureLimit = 2
    }

    public struct Hooks: Sendable {
        public var preDeploy: [String] = []
        public var start: [String] = []
        public var smoke: [String] = []
        /// Rolling: replaces one server (`{server}`, `{address}`) with `{version}`.
        public var update: [String] = []
        public var postDeploy: [String] = []
        /// Blue/green: after `keep_previous`, for the previous pool.
        public var retire: [String] = []
        public var timeout: Duration = .seconds(600)
    }

    public struct NotifyTarget: Sendable {
        public enum Kind: String, Sendable { case slack, webhook, email }
        public var kind: Kind
        /// Never printed: a webhook URL is a credential.
        public var url: String?
        public var urlEnv: String?
        /// The CA bundle of a private CA: the webhook's, or the mail server's.
        public var ca: String?
        /// Events sent to this receiver (`events:`); nil: the kind's default.
        public var events: [String]?
        /// Webhooks: the body, filled for each event (default: the event's JSON).
        public var template: NotifyTemplate?
        public var contentType = "application/json"
        /// Webhooks: more request headers (not secrets: they are in the plan).
        public var headers: [(name: String, value: String)] = []
        /// Webhooks: the shared secret of the signature, from a variable or a file.
        public var secretEnv: String?
        public var secretFile: String?
        /// Email: the message.
        public var email: Email?

        public struct Email: Sendable {
            public enum Security: String, Sendable { case starttls, implicit, none }
            public var to: [String] = []
            public var from = ""
            public var host = ""
            public var port: UInt16 = 587
            public var security: Security = .starttls
            public var usernameEnv: String?
            public var passwordEnv: String?
            public var passwordFile: String?
            public var subject: NotifyTemplate?
            /// The port each security is usually served on, when `port` is not given.
            static func defaultPort(_ security: Security) -> UInt16 {
                switch security { case .starttls: return 587; case .implicit: return 465; case .none: return 25 }
            }
        }

        public init(kind: Kind, url: String?, urlEnv: String?, ca: String?) {
            self.kind = kind; self.url = url; self.urlEnv = urlEnv; self.ca = ca
        }

        /// Events each kind gets by default: everything notified, but email only what needs
        /// someone (approval, a guard's trip) and the end.
        public static let notifiedEvents = ["started", "step", "paused", "approval_needed", "promoted", "guard_tripped", "rolled_back", "failed", "finished"]
        public static let emailEvents = ["approval_needed", "guard_tripped", "finished", "failed"]

        /// Whether this receiver gets events of `kind`.
        public func wants(_ event: String) -> Bool {
            (events ?? (kind == .email ? Self.emailEvents : Self.notifiedEvents)).contains(event)
        }

        /// The URL now (`url_env` is read when a rollout starts).
        public func resolvedURL(environment: [String: String]) -> String? {
            url ?? urlEnv.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
        }
    }
}

/// Reads and validates rollout plans, reporting problems with file:line:column like the proxy's configuration.
public enum PlanLoader {
    public static func load(path: String) throws(ConfigError) -> DeployPlan {
        try NodeReader.load(path: path, what: "the plan") { (text: String) throws(ConfigError) in try parse(yaml: text, file: path) }
    }

    /// The plan and the text it was read from (what a rollout records for a console).
    public static func loadWithText(path: String) throws(ConfigError) -> (plan: DeployPlan, text: String) {
        try NodeReader.load(path: path, what: "the plan") { (text: String) throws(ConfigError) in (try parse(yaml: text, file: path), text) }
    }

    public static func parse(yaml: String, file: String) throws(ConfigError) -> DeployPlan {
        try NodeReader.read(yaml: yaml, file: file, whenEmpty: "the plan is empty; it needs service and environments") { root, reader in
            readPlan(root, file: file, reader: &reader)
        }
    }

    static let rootKeys = ["service", "environments", "analysis", "hooks", "notify", "history", "lock_ttl", "git_tag", "git_push"]
    static let environmentKeys = ["name", "admin", "token_env", "token_file", "ca", "tls_server_name", "strategy", "approval", "steps", "pool",
                                  "preview_url", "watch", "keep_previous", "drain_timeout", "health_timeout", "guard", "rollback",
                                  "batch", "bake", "hooks"]
    static let environmentHookKeys = ["pre_deploy", "post_promote"]

    static func readPlan(_ root: Node, file: String, reader r: inout NodeReader) -> DeployPlan? {
        guard let fields = r.mapping(root, "", allowed: rootKeys) else { return nil }
        var plan = DeployPlan(path: file, service: "", environments: [], analysis: .init(), hooks: .init(), notify: [],
                              history: ".switchyard/history.sqlite", lockTTL: .seconds(120), gitTag: false, gitPush: nil)
        for (key, v) in fields {
            switch key {
            case "service":
                if let s = r.scalar(v, key) {
                    if isName(s) { plan.service = s } else { r.problem(v, key, "\"\(s)\" is not a service name (letters, digits, - _ .)") }
                }
            case "environments": plan.environments = readEnvironments(v, reader: &r)
            case "analysis": plan.analysis = readAnalysis(v, reader: &r)
            case "hooks": plan.hooks = readHooks(v, reader: &r)
            case "notify": plan.notify = readNotify(v, reader: &r)
            case "history": if let s = r.scalar(v, key), !s.isEmpty { plan.history = s }
            case "lock_ttl":
                if let d = r.duration(v, key) {
                    if d < .seconds(3) { r.problem(v, key, "too short; the lock is renewed every third of it, use at least 3s") } else { plan.lockTTL = d }
                }
            case "git_tag":
                if let s = r.scalar(v, key) {
                    guard s == "true" || s == "false" else { r.problem(v, key, "true or false"); continue }
                    plan.gitTag = s == "true"
                }
            case "git_push":
                if let s = r.scalar(v, key) {
                    // A remote name or URL; never something git would take for an option.
                    if s.isEmpty || s.hasPrefix("-") || s.contains(where: { $0.isWhitespace || $0.isNewline }) {
                        r.problem(v, key, "\"\(s)\" is not a git remote; name one such as origin, or give its URL")
                    } else {
                        plan.gitPush = s
                    }
                }
            default: break
            }
        }
        if plan.gitPush != nil && !plan.gitTag, let node = fields.first(where: { $0.key == "git_push" })?.value {
            r.problem(node, "git_push", "pushes the tag git_tag creates; add git_tag: true")
        }
        if let node = fields.first(where: { $0.key == "hooks" })?.value,
           plan.hooks.preDeploy.contains(where: { HookRunner.placeholders(in: $0).contains("env") }) {
            r.problem(node, "hooks.pre_deploy", "runs once per rollout, before any environment, so {env} has no value there; "
                      + "to run it in each environment's turn, declare it in the environment: hooks: { pre_deploy: [...] }")
        }
        if !fields.contains(where: { $0.key == "service" }) { r.problem(root, "service", "missing; name the service as the proxies' configuration does") }
        if !fields.contains(where: { $0.key == "environments" }) { r.problem(root, "environments", "missing; list dev, stage, prod... in promotion order") }
        if plan.hooks.smoke.contains(where: { HookRunner.placeholders(in: $0).contains("preview_url") }) {
            for env in plan.environments where env.strategy == .bluegreen && env.previewURL == nil {
                r.problem(root, "environments.\(env.name).preview_url", "the smoke hooks use {preview_url}; give this environment's preview URL")
            }
        }
        // Blue/green watches one analysis interval after the flip unless `watch: 0s`.
        let needsAnalysis = plan.environments.contains { $0.strategy != .bluegreen || $0.watch.map { $0 > .zero } ?? true }
        if needsAnalysis && plan.analysis.maxErrorRate == nil && plan.analysis.maxP99 == nil && plan.analysis.maxErrorRateVsBaseline == nil {
            r.problem(root, "analysis", "a canary, rolling or watched rollout needs a criterion: max_error_rate, max_error_rate_vs_baseline or max_p99")
        }
        return plan
    }

    static func isName(_ s: String) -> Bool {
        !s.isEmpty && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    static func readEnvironments(_ node: Node, reader r: inout NodeReader) -> [DeployPlan.Environment] {
        guard let items = r.sequence(node, "environments") else { return [] }
        if items.isEmpty { r.problem(node, "environments", "empty; list at least one environment") }
        var result: [DeployPlan.Environment] = []
        for (i, item) in items.enumerated() {
            let path = "environments[\(i)]"
            guard let fields = r.mapping(item, path, allowed: environmentKeys) else { continue }
            var env = DeployPlan.Environment(name: "", proxies: [], tokenEnv: "", tokenFile: nil, ca: nil, tlsServerName: nil, strategy: .bluegreen,
                                             manualApproval: false, steps: [], pool: nil, previewURL: nil, watch: nil,
                                             keepPrevious: .zero, drainTimeout: .seconds(30), healthTimeout: .seconds(60),
                                             guardrail: nil, rollback: .instant)
            var sawAdmin = false, sawStrategy = false
            for (key, v) in fields {
                let keyPath = "\(path).\(key)"
                switch key {
                case "name":
                    if let s = r.scalar(v, keyPath) {
                        if isName(s) { env.name = s } else { r.problem(v, keyPath, "\"\(s)\" is not a name (letters, digits, - _ .)") }
                        if result.contains(where: { $0.name == s }) { r.problem(v, keyPath, "environment \(s) appears twice") }
                    }
                case "admin":
                    sawAdmin = true
                    env.proxies = readProxies(v, path: keyPath, reader: &r)
                case "token_env": if let s = r.scalar(v, keyPath) { env.tokenEnv = s }
                case "token_file": env.tokenFile = r.scalar(v, keyPath)
                case "ca": env.ca = r.scalar(v, keyPath)
                case "tls_server_name": env.tlsServerName = r.scalar(v, keyPath)
                case "strategy":
                    sawStrategy = true
                    if let s = r.scalar(v, keyPath) {
                        if let value = DeployPlan.Strategy(rawValue: s) { env.strategy = value }
                        else { r.problem(v, keyPath, "\"\(s)\" is not a strategy; use bluegreen, canary or rolling") }
                    }
                case "approval":
                    if let s = r.scalar(v, keyPath) {
                        guard s == "manual" || s == "auto" else { r.problem(v, keyPath, "\"\(s)\": use manual (wait for `switchyard deploy approve`) or auto"); continue }
                        env.manualApproval = s == "manual"
                    }
                case "steps": env.steps = readSteps(v, path: keyPath, reader: &r)
                case "pool": env.pool = r.scalar(v, keyPath)
                case "preview_url": env.previewURL = r.scalar(v, keyPath)
                case "watch": env.watch = r.duration(v, keyPath)
                case "keep_previous": env.keepPrevious = r.duration(v, keyPath) ?? .zero
                case "drain_timeout": env.drainTimeout = r.duration(v, keyPath) ?? env.drainTimeout
                case "health_timeout": env.healthTimeout = r.duration(v, keyPath) ?? env.healthTimeout
                case "guard": env.guardrail = r.readGuard(v, path: keyPath)
                case "rollback":
                    if case .scalar = v, let s = r.scalar(v, keyPath) {
                        guard s == "instant" else { r.problem(v, keyPath, "\"\(s)\": use instant, or {gradual: 10s} to halve the weight every 10s"); continue }
                        env.rollback = .instant
                    } else if let g = r.mapping(v, keyPath, allowed: ["gradual"]), let d = g.first.flatMap({ r.duration($0.value, "\(keyPath).gradual") }) {
                        env.rollback = .gradual(interval: d)
                    }
                case "batch": env.batch = readBatch(v, path: keyPath, reader: &r)
                case "bake":
                    if let d = r.duration(v, keyPath) { env.bake = d > .zero ? d : nil }
                case "hooks":
                    guard let hooks = r.mapping(v, keyPath, allowed: environmentHookKeys) else { continue }
                    for (hookKey, hookNode) in hooks {
                        let commands = readCommands(hookNode, path: "\(keyPath).\(hookKey)", reader: &r)
                        if hookKey == "pre_deploy" { env.preDeploy = commands } else { env.postPromote = commands }
                    }
                default: break
                }
            }
            if env.name.isEmpty && !fields.contains(where: { $0.key == "name" }) { r.problem(item, "\(path).name", "missing; e.g. dev, stage or prod") }
            if !sawAdmin { r.problem(item, "\(path).admin", "missing; the proxy's admin socket (unix:///...) or https://host:port") }
            if !sawStrategy { r.problem(item, "\(path).strategy", "missing; bluegreen, canary or rolling") }
            if env.tokenEnv.isEmpty { env.tokenEnv = "SWITCHYARD_TOKEN_" + env.name.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined() }
            if env.strategy == .canary {
                if !env.steps.contains(where: { if case .weight = $0 { return true } else { return false } }) {
                    r.problem(item, "\(path).steps", "a canary needs steps with weights, e.g. [{weight: 5%}, {pause: 2m}, {weight: 50%}, {pause: 5m}]")
                }
            } else if !env.steps.isEmpty {
                r.problem(item, "\(path).steps", "steps apply to the canary strategy only")
            }
            for address in env.proxies {
                if let other = result.first(where: { $0.proxies.contains(address) }) {
                    r.problem(fields.first { $0.key == "admin" }?.value ?? item, "\(path).admin",
                              "\(address) is also \(other.name)'s proxy; each environment has its own proxies (the rollout's lock covers them all)")
                }
            }
            if env.guardrail != nil && env.strategy != .canary { r.problem(item, "\(path).guard", "the guard protects a canary; use it with strategy: canary") }
            if env.batch != nil && env.strategy != .rolling {
                r.problem(fields.first { $0.key == "batch" }?.value ?? item, "\(path).batch", "batches are servers of a rolling update; use it with strategy: rolling")
            }
            result.append(env)
        }
        return result
    }

    static func readSteps(_ node: Node, path: String, reader r: inout NodeReader) -> [DeployPlan.Step] {
        guard let items = r.sequence(node, path) else { return [] }
        var steps: [DeployPlan.Step] = []
        var last = 0
        for (i, item) in items.enumerated() {
            let stepPath = "\(path)[\(i)]"
            guard let f = r.mapping(item, stepPath, allowed: ["weight", "pause"]), f.count == 1 else {
                r.problem(item, stepPath, "each step is {weight: 5%} or {pause: 2m} (or {pause: manual})"); continue
            }
            let (key, v) = f[0]
            if key == "weight" {
                guard let bp = r.basisPoints(v, "\(stepPath).weight") else { continue }
                if bp == 0 { r.problem(v, "\(stepPath).weight", "a step of 0% sends nothing to the canary; start above 0%") }
                if bp < last { r.problem(v, "\(stepPath).weight", "weights only rise; \(BasisPoints.format(bp)) follows \(BasisPoints.format(last))") }
                last = bp
                steps.append(.weight(bp))
            } else {
                if case .scalar(let s) = v, s.string == "manual" { steps.append(.pause(nil)); continue }
                if let d = r.duration(v, "\(stepPath).pause") { steps.append(.pause(d)) }
            }
        }
        return steps
    }

    static func readAnalysis(_ node: Node, reader r: inout NodeReader) -> DeployPlan.Analysis {
        var a = DeployPlan.Analysis()
        guard let fields = r.mapping(node, "analysis", allowed: ["interval", "min_requests", "max_error_rate", "max_error_rate_vs_baseline",
                                                                 "max_p99", "failure_limit"]) else { return a }
        for (key, v) in fields {
            let path = "analysis.\(key)"
            switch key {
            case "interval":
                if let d = r.duration(v, path) {
                    if d < .milliseconds(100) { r.problem(v, path, "too short; use at least 1s") } else { a.interval = d }
                }
            case "min_requests": a.minRequests = r.integer(v, path, range: 1...100_000_000) ?? a.minRequests
            case "max_error_rate": a.maxErrorRate = r.basisPoints(v, path)
            case "max_error_rate_vs_baseline":
                if let s = r.scalar(v, path) {
                    let number = s.hasSuffix("x") ? String(s.dropLast()) : s
                    if let f = Double(number), f >= 1, f.isFinite { a.maxErrorRateVsBaseline = f }
                    else { r.problem(v, path, "\"\(s)\" is not a factor of at least 1; write e.g. 2x") }
                }
            case "max_p99": a.maxP99 = r.duration(v, path)
            case "failure_limit": a.failureLimit = r.integer(v, path, range: 1...1000) ?? a.failureLimit
            default: break
            }
        }
        return a
    }

    static func readHooks(_ node: Node, reader r: inout NodeReader) -> DeployPlan.Hooks {
        var h = DeployPlan.Hooks()
        guard let fields = r.mapping(node, "hooks", allowed: ["pre_deploy", "start", "smoke", "update", "post_deploy", "retire", "timeout"]) else { return h }
        for (key, v) in fields {
            let path = "hooks.\(key)"
            if key == "timeout" { h.timeout = r.duration(v, path) ?? h.timeout; continue }
            let commands = readCommands(v, path: path, reader: &r)
            switch key {
            case "pre_deploy": h.preDeploy = commands
            case "start": h.start = commands
            case "smoke": h.smoke = commands
            case "update": h.update = commands
            case "post_deploy": h.postDeploy = commands
            case "retire": h.retire = commands
            default: break
            }
        }
        return h
    }

    /// One command or a list of them, each checked for unknown placeholders.
    static func readCommands(_ v: Node, path: String, reader r: inout NodeReader) -> [String] {
        var commands: [String] = []
        if case .scalar = v, let s = r.scalar(v, path) { if !s.isEmpty { commands = [s] } }
        else if let items = r.sequence(v, path) {
            for (i, item) in items.enumerated() { if let s = r.scalar(item, "\(path)[\(i)]") { commands.append(s) } }
        }
        for c in commands {
            let unknown = HookRunner.placeholders(in: c).filter { !HookRunner.knownPlaceholders.contains($0) }
            if !unknown.isEmpty {
                r.problem(v, path, "unknown placeholder \(unknown.map { "{\($0)}" }.joined(separator: ", ")) in \"\(c)\"; known: \(HookRunner.knownPlaceholders.map { "{\($0)}" }.joined(separator: " "))")
            }
        }
        return commands
    }

    /// `admin:` as one address or a list of them; sorted by address, the order of locks and changes.
    static func readProxies(_ node: Node, path: String, reader r: inout NodeReader) -> [DeployPlan.AdminAddress] {
        let items: [(node: Node, path: String)]
        if case .sequence(let list) = node {
            if list.isEmpty { r.problem(node, path, "empty; list the environment's proxies, e.g. [unix:///run/switchyard/admin.sock, https://lb2:9901]") }
            items = list.enumerated().map { ($0.element, "\(path)[\($0.offset)]") }
        } else {
            items = [(node, path)]
        }
        var proxies: [DeployPlan.AdminAddress] = []
        for (item, itemPath) in items {
            guard let s = r.scalar(item, itemPath) else { continue }
            guard let address = DeployPlan.AdminAddress.parse(s) else {
                r.problem(item, itemPath, "\"\(s)\" is not an admin address; write unix:///run/switchyard/admin.sock or https://host:9901")
                continue
            }
            if proxies.contains(address) { r.problem(item, itemPath, "\(address) is listed twice"); continue }
            proxies.append(address)
        }
        return proxies.sorted { $0.description < $1.description }
    }

    /// `batch: 2` (servers) or `batch: 25%` (of the servers in rotation).
    static func readBatch(_ node: Node, path: String, reader r: inout NodeReader) -> DeployPlan.Batch? {
        guard let text = r.scalar(node, path) else { return nil }
        if text.hasSuffix("%") {
            guard let bp = r.basisPoints(node, path) else { return nil }
            guard bp > 0 else { r.problem(node, path, "0% updates nothing; use a share above 0%, or a number of servers"); return nil }
            return .share(bp)
        }
        guard let count = Int(text), count >= 1, count <= 10_000 else {
            r.problem(node, path, "\"\(text)\" is not a batch; write a number of servers (e.g. 2) or a share of the pool (e.g. 25%)")
            return nil
        }
        return .servers(count)
    }

    static let notifyKeys = ["kind", "url", "url_env", "ca", "events", "template", "content_type", "headers", "secret_env", "secret_file",
                             "to", "from", "host", "port", "tls", "username_env", "password_env", "password_file", "subject"]
    static let webhookKeys: Set<String> = ["template", "content_type", "headers", "secret_env", "secret_file"]
    static let emailKeys: Set<String> = ["to", "from", "host", "port", "tls", "username_env", "password_env", "password_file", "subject"]

    static func readNotify(_ node: Node, reader r: inout NodeReader) -> [DeployPlan.NotifyTarget] {
        guard let items = r.sequence(node, "notify") else { return [] }
        var result: [DeployPlan.NotifyTarget] = []
        for (i, item) in items.enumerated() {
            let path = "notify[\(i)]"
            guard let f = r.mapping(item, path, allowed: notifyKeys) else { continue }
            var t = DeployPlan.NotifyTarget(kind: .webhook, url: nil, urlEnv: nil, ca: nil)
            if let kindNode = f.first(where: { $0.key == "kind" })?.value, let s = r.scalar(kindNode, "\(path).kind") {
                if let k = DeployPlan.NotifyTarget.Kind(rawValue: s) { t.kind = k } else { r.problem(kindNode, "\(path).kind", "\"\(s)\": use slack, webhook or email") }
            }
            var email = DeployPlan.NotifyTarget.Email()
            var portGiven = false
            var templateNode: Node?
            for (key, v) in f {
                let keyPath = "\(path).\(key)"
                if t.kind != .webhook && webhookKeys.contains(key) {
                    r.problem(v, keyPath, "only for kind: webhook"); continue
                }
                if t.kind != .email && emailKeys.contains(key) {
                    r.problem(v, keyPath, "only for kind: email"); continue
                }
                if t.kind == .email && (key == "url" || key == "url_env") {
                    r.problem(v, keyPath, "kind: email sends to a mail server: give host, port, from and to"); continue
                }
                switch key {
                case "url":
                    // The URL itself is a secret: problems name the key, never the value.
                    if let s = r.scalar(v, keyPath) {
                        if HTTPURL(s) == nil { r.problem(v, keyPath, "not an http:// or https:// URL") } else { t.url = s }
                    }
                case "url_env": t.urlEnv = r.scalar(v, keyPath)
                case "ca": t.ca = r.scalar(v, keyPath)
                case "events":
                    guard let list = r.sequence(v, keyPath) else { continue }
                    var events: [String] = []
                    for (j, e) in list.enumerated() {
                        guard let s = r.scalar(e, "\(keyPath)[\(j)]") else { continue }
                        if DeployPlan.NotifyTarget.notifiedEvents.contains(s) { events.append(s) }
                        else { r.problem(e, "\(keyPath)[\(j)]", "\"\(s)\" is not notified; use: \(DeployPlan.NotifyTarget.notifiedEvents.joined(separator: ", "))") }
                    }
                    t.events = events
                case "template": templateNode = v
                case "content_type":
                    if let s = r.scalar(v, keyPath) {
                        if s.isEmpty || s.contains(where: { $0 == "\r" || $0 == "\n" }) { r.problem(v, keyPath, "a media type such as application/json or text/plain") }
                        else { t.contentType = s }
                    }
                case "headers":
                    guard let pairs = r.mapping(v, keyPath, allowed: []) else { continue }
                    for (name, value) in pairs {
                        guard let text = r.scalar(value, "\(keyPath).\(name)") else { continue }
                        let reserved = ["host", "content-length", "content-type", "connection", "transfer-encoding",
                                        "x-switchyard-signature", "x-switchyard-timestamp"]
                        if name.isEmpty || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }) {
                            r.problem(value, "\(keyPath).\(name)", "not a header name (letters, digits, - and _)")
                        } else if reserved.contains(name.lowercased()) {
                            r.problem(value, "\(keyPath).\(name)", "set by switchyard itself\(name.lowercased() == "content-type" ? "; use content_type" : "")")
                        } else if text.contains(where: { $0 == "\r" || $0 == "\n" }) {
                            r.problem(value, "\(keyPath).\(name)", "a header value is one line")
                        } else {
                            t.headers.append((name, text))
                        }
                    }
                case "secret_env": t.secretEnv = r.scalar(v, keyPath)
                case "secret_file": t.secretFile = r.scalar(v, keyPath)
                case "to":
                    if case .scalar = v, let s = r.scalar(v, keyPath) { email.to = [s] }
                    else if let list = r.sequence(v, keyPath) {
                        email.to = list.enumerated().compactMap { r.scalar($0.element, "\(keyPath)[\($0.offset)]") }
                    }
                    for (j, address) in email.to.enumerated() where !isMailAddress(address) {
                        r.problem(v, email.to.count > 1 ? "\(keyPath)[\(j)]" : keyPath, "\"\(address)\" is not a mail address such as ops@example.com")
                    }
                case "from":
                    if let s = r.scalar(v, keyPath) {
                        if isMailAddress(s) { email.from = s } else { r.problem(v, keyPath, "\"\(s)\" is not a mail address such as deploy@example.com") }
                    }
                case "host":
                    if let s = r.scalar(v, keyPath) {
                        if s.isEmpty || s.contains(where: { $0 == "/" || $0 == ":" && !s.hasPrefix("[") || $0.isWhitespace }) {
                            r.problem(v, keyPath, "the mail server's name or address, without a port (port: is its own key)")
                        } else { email.host = s.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }
                    }
                case "port":
                    if let p = r.integer(v, keyPath, range: 1...65535), let port = UInt16(exactly: p) { email.port = port; portGiven = true }
                case "tls":
                    if let s = r.scalar(v, keyPath) {
                        if let security = DeployPlan.NotifyTarget.Email.Security(rawValue: s) { email.security = security }
                        else { r.problem(v, keyPath, "\"\(s)\": use starttls (the default), implicit (TLS from the start, port 465) or none") }
                    }
                case "username_env": email.usernameEnv = r.scalar(v, keyPath)
                case "password_env": email.passwordEnv = r.scalar(v, keyPath)
                case "password_file": email.passwordFile = r.scalar(v, keyPath)
                case "subject":
                    if let s = r.scalar(v, keyPath) {
                        do { email.subject = try NotifyTemplate(s) } catch { r.problem(v, keyPath, error.message) }
                    }
                default: break
                }
            }
            if let templateNode, let s = r.scalar(templateNode, "\(path).template") {
                do {
                    let template = try NotifyTemplate(s)
                    if NotifyTemplate.Escaping(contentType: t.contentType) == .json, let problem = template.jsonProblem() {
                        r.problem(templateNode, "\(path).template", problem)
                    } else {
                        t.template = template
                    }
                } catch {
                    r.problem(templateNode, "\(path).template", error.line > 1 ? "line \(error.line) of the template: \(error.message)" : error.message)
                }
            }
            if t.secretEnv != nil && t.secretFile != nil { r.problem(item, path, "give one of secret_env or secret_file, not both") }
            switch t.kind {
            case .slack, .webhook:
                if (t.url == nil) == (t.urlEnv == nil) { r.problem(item, path, "give exactly one of url or url_env (the variable that holds the URL)") }
            case .email:
                if !portGiven { email.port = DeployPlan.NotifyTarget.Email.defaultPort(email.security) }
                if email.host.isEmpty { r.problem(item, "\(path).host", "missing: the mail server (e.g. smtp.example.com)") }
                if email.from.isEmpty { r.problem(item, "\(path).from", "missing: the sender's address (e.g. deploy@example.com)") }
                if email.to.isEmpty { r.problem(item, "\(path).to", "missing: one or more recipients") }
                if email.passwordEnv != nil && email.passwordFile != nil { r.problem(item, path, "give one of password_env or password_file, not both") }
                if (email.usernameEnv != nil) != (email.passwordEnv != nil || email.passwordFile != nil) {
                    r.problem(item, path, "a login needs both username_env and password_env (or password_file); give both or neither")
                }
                if email.security == .none && email.usernameEnv != nil {
                    r.problem(item, "\(path).tls", "none would send the password in clear; use starttls or implicit to log in")
                }
                t.email = email
            }
            result.append(t)
        }
        return result
    }

    /// local@domain, one line, no spaces or angle brackets (they go into SMTP commands and headers).
    static func isMailAddress(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let local = parts.first, let domain = parts.last, !local.isEmpty, domain.contains("."), !domain.hasPrefix("."),
              text.utf8.count <= 254 else { return false }
        return !text.contains { $0.isWhitespace || "<>()[],;:\"\\".contains($0) || $0.asciiValue.map { $0 < 32 || $0 == 127 } == true }
    }
}

extension DeployPlan {
    /// The plan with only the environments named, in the plan's order (`deploy run --env`).
    /// - Throws: naming the unknown environments and the plan's.
    public func selecting(environments names: [String]) throws(ClientError) -> DeployPlan {
        let known = environments.map(\.name)
        let unknown = names.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            throw ClientError("\(path) has no environment \(unknown.joined(separator: ", ")); its environments: \(known.joined(separator: ", "))")
        }
        var plan = self
        plan.environments = environments.filter { names.contains($0.name) }
        return plan
    }
}

/// Versions: `[ticket]-[module]-[yyyyMMddHHmmss]` in UTC, e.g. `OPS-142-api-20261121153000`.
public enum VersionName {
    public static func make(ticket: String, module: String, at date: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let stamp = String(format: "%04d%02d%02d%02d%02d%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
        return "\(ticket)-\(module)-\(stamp)"
    }

    /// Versions go into hook commands, tags and file names: a conservative alphabet.
    public static func isValid(_ version: String) -> Bool {
        !version.isEmpty && version.count <= 128 && version.first != "-"
            && version.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.+".contains($0)) }
    }
}
