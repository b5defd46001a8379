import ArgumentParser
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardAdminClient
import SwitchyardConfig
import SwitchyardRouting

/// `switchyard ctl`: the admin API for operators and pipelines, one command per endpoint.
/// Exit codes (docs/admin-api.md): 0 done; 1 refused by Switchyard (the reason on one line on
/// stderr) or a drain --wait timed out; 2 cannot reach or use the admin API (not running, TLS,
/// token refused, unreadable answer); 64 bad usage.
struct Ctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operate a running Switchyard through its admin API.",
        discussion: """
            The admin API is --admin ADDRESS, else $SWITCHYARD_ADMIN, else /run/switchyard/admin.sock: a socket path \
            (or unix:///PATH), http://127.0.0.1:PORT (loopback only) or https://HOST:PORT. Over TCP, the bearer token \
            is read from --token-file FILE, else $SWITCHYARD_ADMIN_TOKEN; it is never printed. \
            Exit codes: 0 done; 1 refused by Switchyard; 2 the admin API cannot be reached or used; 64 bad usage.
            """,
        subcommands: ctlCommands)

    /// Every ctl command, in the order help lists them.
    static let ctlCommands: [ParsableCommand.Type] = [
        CtlStatus.self, CtlFlip.self, CtlCanary.self, CtlRules.self, CtlRollback.self,
        CtlWeight.self, CtlDrain.self, CtlUndrain.self, CtlMaint.self, CtlAddServer.self, CtlRemoveServer.self,
        CtlVersion.self, CtlLock.self, CtlUnlock.self, CtlReload.self, CtlAudit.self, CtlMetrics.self,
    ]
}

/// A ctl command and the admin API endpoints it calls (a unit test checks that every endpoint
/// has a command; help shows them).
protocol CtlCommand: ParsableCommand {
    static var endpoints: [AdminEndpoint.ID] { get }
}

/// A ctl command's configuration, its help naming the endpoints it calls.
func ctlConfiguration(_ name: String, _ abstract: String, _ endpoints: [AdminEndpoint.ID], discussion: String = "") -> CommandConfiguration {
    let calls = endpoints.map { AdminAPI.endpoint($0) }.map { "\($0.method) \($0.pattern)" }.joined(separator: ", ")
    let text = (discussion.isEmpty ? "" : discussion + "\n\n") + "Admin API: \(calls)."
    return CommandConfiguration(commandName: name, abstract: abstract, discussion: text)
}

struct AdminOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The admin API: a socket path, unix:///PATH, http://127.0.0.1:PORT or https://HOST:PORT (default: $SWITCHYARD_ADMIN or /run/switchyard/admin.sock).",
                               valueName: "address"))
    var admin: String?

    @Option(help: ArgumentHelp("Over TCP: a file holding the bearer token (default: $SWITCHYARD_ADMIN_TOKEN).", valueName: "file"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("Over HTTPS: the CA certificates (PEM) to trust (default: $SWITCHYARD_ADMIN_CA, else the system's).", valueName: "file"))
    var ca: String?

    @Option(help: ArgumentHelp("Over HTTPS: the name to verify in the proxy's certificate, when the address is not it.", valueName: "name"))
    var tlsServerName: String?

    @Option(help: "Who is acting, recorded in the audit trail (X-Switchyard-Actor).")
    var actor: String?

    @Option(help: "The deploy lock's token, when the state is locked (default: $SWITCHYARD_LOCK_TOKEN).")
    var lockToken: String?

    @Option(help: "Refuse the change unless the state is still at this generation (If-Match).")
    var ifMatch: UInt64?

    @Flag(help: "Print the admin API's JSON answer instead of text.")
    var json = false

    /// The options that `switchyard ctl --admin X COMMAND` may give before the command
    /// (Switchyard.main moves them after it); the flags take no value.
    static let sharedOptions: Set<String> = ["--admin", "--token-file", "--ca", "--tls-server-name", "--actor", "--lock-token", "--if-match"]
    static let sharedFlags: Set<String> = ["--json"]

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// What --admin (or $SWITCHYARD_ADMIN) names; a bare path is a Unix socket.
    var address: AdminAddress {
        let text = admin ?? environment["SWITCHYARD_ADMIN"] ?? "/run/switchyard/admin.sock"
        if !text.contains("://") { return .unix(path: text) }
        guard let address = AdminAddress.parse(text) else {
            ctlUsage("--admin \(text) is not an admin address; give a socket path, unix:///PATH, http://127.0.0.1:PORT or https://HOST:PORT")
        }
        return address
    }

    /// The admin API with the headers the options give, and the answers kept in `answers`.
    func client(answers: AnswerLog? = nil) -> AdminAPIClient {
        let address = self.address
        var bearer: String? = nil
        if case .tcp(_, _, let tls) = address {
            if !tls && !address.isLoopback {
                ctlUsage("\(address) would send the token unencrypted over the network; use https:// (the proxy serves plain HTTP on loopback only)")
            }
            do {
                // An explicit --token-file wins over the environment.
                bearer = try AdminAddress.token(variable: "SWITCHYARD_ADMIN_TOKEN", environment: tokenFile == nil ? environment : [:], file: tokenFile)
            } catch {
                ctlFail("\(error.description)")
            }
            guard bearer != nil else {
                ctlFail("the admin API at \(address) needs a token: give --token-file FILE or set $SWITCHYARD_ADMIN_TOKEN")
            }
        }
        let caFile = ca ?? environment["SWITCHYARD_ADMIN_CA"]
        var client = AdminAPIClient(target: address.target(ca: caFile, serverName: tlsServerName), actor: actor, bearer: bearer,
                                    lockToken: lockToken ?? environment["SWITCHYARD_LOCK_TOKEN"], ifMatch: ifMatch, timeout: 30)
        client.answers = answers
        return client
    }

    /// Makes one call; returns its answer, or exits: 1 with the proxy's reason when it refuses,
    /// 2 when it cannot be reached or does not accept the credentials.
    func call<T>(_ body: (AdminAPIClient) throws(AdminFailure) -> T) -> T {
        call(client(), body)
    }

    func call<T>(_ client: AdminAPIClient, _ body: (AdminAPIClient) throws(AdminFailure) -> T) -> T {
        switch attempt(client, body) {
        case .success(let value): return value
        case .failure(let failure): failure.exit()
        }
    }

    func attempt<T>(_ client: AdminAPIClient, _ body: (AdminAPIClient) throws(AdminFailure) -> T) -> Result<T, CtlFailure> {
        do {
            return .success(try body(client))
        } catch {
            switch error {
            case .refused(401, _, _):
                return .failure(CtlFailure(code: 2, message: "the admin API at \(address) refused the token (401): "
                                           + "check --token-file or $SWITCHYARD_ADMIN_TOKEN against the proxy's admin.tokens_file"))
            case .refused(_, let error, let detail):
                return .failure(CtlFailure(code: 1, message: "\(error): \(detail)"))
            case .unreachable(let reason):
                let hint: String
                switch address {
                case .unix: hint = "is Switchyard running with admin.socket set, and may you open it?"
                case .tcp(_, _, true): hint = "is Switchyard listening there with admin.tcp and admin.tls, and does --ca (or --tls-server-name) match its certificate?"
                case .tcp: hint = "is Switchyard listening there with admin.tcp?"
                }
                return .failure(CtlFailure(code: 2, message: "admin API at \(address): \(reason); \(hint)"))
            }
        }
    }

    /// Makes one change and prints, with --json, the proxy's answer as it wrote it, else `text(answer)`.
    func change<T>(_ body: (AdminAPIClient) throws(AdminFailure) -> T, text: (T) -> String) {
        let answers = AnswerLog()
        let result = call(client(answers: answers), body)
        if json {
            printDocument(answers.last ?? Data("{}".utf8))
        } else {
            print(text(result))
        }
    }
}

/// A call that did not succeed: the exit code and the message for stderr.
struct CtlFailure: Error {
    var code: Int32
    var message: String

    func exit() -> Never {
        FileHandle.standardError.write(Data("switchyard ctl: \(message)\n".utf8))
        Glibc.exit(code)
    }
}

/// The admin API cannot be reached or used: exit 2.
func ctlFail(_ message: String) -> Never {
    CtlFailure(code: 2, message: message).exit()
}

/// The command line is wrong: exit 64 (EX_USAGE), as for the argument parser's own errors.
func ctlUsage(_ message: String) -> Never {
    CtlFailure(code: 64, message: message).exit()
}

func printJSON(_ object: Any) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Prints a JSON answer as the proxy wrote it (an empty answer as `{}`).
func printDocument(_ data: Data) {
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    print(text.isEmpty ? "{}" : text)
}

/// Microseconds as JSON gave them: a whole number without a fraction.
func micros(_ value: Double) -> String {
    value.isFinite && value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
}

/// POOL/SERVER split, or nil when the text is not one.
func poolAndServer(_ text: String) -> (pool: String, server: String)? {
    let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
    return (String(parts[0]), String(parts[1]))
}

/// A POOL/SERVER argument, checked when the command line is parsed.
struct ServerArgument: ParsableArguments {
    @Argument(help: ArgumentHelp("The server, as POOL/SERVER.", valueName: "pool/server")) var server: String

    var pool: String { poolAndServer(server)?.pool ?? "" }
    var name: String { poolAndServer(server)?.server ?? "" }

    func validate() throws {
        guard poolAndServer(server) != nil else { throw ValidationError("\(server) is not POOL/SERVER, e.g. blue/b1") }
    }
}

// MARK: Services

struct CtlFlip: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.flip]
    static let configuration = ctlConfiguration("flip", "Swap a service's active and standby pools atomically.", endpoints)
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "Make this pool active (default: the standby).") var to: String?

    func run() {
        options.change({ c throws(AdminFailure) in try c.flip(service: service, to: to) }) { r in
            "flipped \(service); generation \(r.generation) acknowledged by every worker in \(micros(r.acknowledgedMicroseconds)) us"
        }
    }
}

struct CtlCanary: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.setCanary]
    static let configuration = ctlConfiguration("canary", "Set a service's canary pool, weight, sticky key and guard (weight 0% removes it).", endpoints)
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "The canary pool (default: the current one).") var pool: String?
    @Option(help: "The share, e.g. 5% or 0.25%.") var weight: String
    @Option(help: "Keep each client on one side by this cookie.") var stickyCookie: String?
    @Option(help: "Keep each client on one side by this request header.") var stickyHeader: String?
    @Flag(help: "Keep each client on one side by its address.") var stickyClientIp = false
    @Flag(help: "Remove the sticky key.") var noSticky = false
    @Option(help: "Arm the canary guard: the error share (5xx and failed exchanges) at which the proxy removes the canary, e.g. 50%.")
    var guardErrorRate: String?
    @Option(help: "With --guard-error-rate: finished requests needed in the window (default 20).") var guardMinRequests: Int?
    @Option(help: "With --guard-error-rate: the window, e.g. 10s (default 10s).") var guardWindow: String?
    @Flag(help: "Disarm the canary guard.") var noGuard = false

    func validate() throws {
        if guardErrorRate == nil && (guardMinRequests != nil || guardWindow != nil) {
            throw ValidationError("--guard-min-requests and --guard-window need --guard-error-rate")
        }
        if guardErrorRate != nil && noGuard { throw ValidationError("give --guard-error-rate or --no-guard, not both") }
        let sticky = [stickyCookie != nil, stickyHeader != nil, stickyClientIp, noSticky].filter { $0 }.count
        if sticky > 1 { throw ValidationError("give one of --sticky-cookie, --sticky-header, --sticky-client-ip and --no-sticky") }
    }

    func run() {
        var guardrail: AdminSetting<GuardBody>? = noGuard ? .clear : nil
        if let guardErrorRate {
            guardrail = .set(GuardBody(maxErrorRate: guardErrorRate, minRequests: guardMinRequests, window: guardWindow))
        }
        var sticky: AdminSetting<StickyBody>? = noSticky ? .clear : nil
        if let stickyCookie { sticky = .set(.cookie(stickyCookie)) }
        if let stickyHeader { sticky = .set(.header(stickyHeader)) }
        if stickyClientIp { sticky = .set(.clientIP) }
        options.change({ c throws(AdminFailure) in
            try c.setCanary(service: service, pool: pool, weight: weight, sticky: sticky, guardrail: guardrail)
        }) { r in "canary of \(service) set to \(weight); generation \(r.generation)" }
    }
}

struct CtlRules: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.setRules]
    static let configuration = ctlConfiguration(
        "rules", "Replace a service's header and cookie rules (in order; the first that matches routes).", endpoints,
        discussion: "Each rule is header:NAME=VALUE@POOL or cookie:NAME=VALUE@POOL, e.g. --rule header:X-Canary=always@green. --clear removes them all.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(name: .customLong("rule"), help: ArgumentHelp("A rule: header:NAME=VALUE@POOL or cookie:NAME=VALUE@POOL (repeat for more).", valueName: "rule"))
    var rules: [String] = []
    @Flag(help: "Remove every rule.") var clear = false

    /// `header:X-Canary=always@green`: the kind before the first `:`, the name before the first
    /// `=`, the pool after the last `@` (names hold neither `:`, `=` nor `@`).
    static func parse(_ text: String) -> RulesBody.Rule? {
        guard let colon = text.firstIndex(of: ":"), let kind = RouteRule.Kind(rawValue: String(text[..<colon])) else { return nil }
        let rest = text[text.index(after: colon)...]
        guard let equals = rest.firstIndex(of: "="), let at = rest.lastIndex(of: "@"), equals < at else { return nil }
        let name = String(rest[..<equals])
        let value = String(rest[rest.index(after: equals)..<at])
        let pool = String(rest[rest.index(after: at)...])
        guard !name.isEmpty, !pool.isEmpty else { return nil }
        return RulesBody.Rule(kind: kind, name: name, value: value, pool: pool)
    }

    func validate() throws {
        guard clear != !rules.isEmpty else { throw ValidationError("give one --rule or more, or --clear to remove every rule") }
        for rule in rules where Self.parse(rule) == nil {
            throw ValidationError("--rule \(rule) is not header:NAME=VALUE@POOL or cookie:NAME=VALUE@POOL")
        }
    }

    func run() {
        let parsed = rules.compactMap(Self.parse)
        options.change({ c throws(AdminFailure) in try c.setRules(service: service, rules: parsed) }) { r in
            "\(service) has \(parsed.count) rule(s); generation \(r.generation)"
        }
    }
}

struct CtlRollback: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.rollback]
    static let configuration = ctlConfiguration("rollback", "Restore a service's previous routing (repeat to walk back).", endpoints)
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String

    func run() {
        options.change({ c throws(AdminFailure) in try c.rollback(service: service) }) { r in "rolled back \(service); generation \(r.generation)" }
    }
}

// MARK: Servers

struct CtlWeight: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.setServer]
    static let configuration = ctlConfiguration("weight", "Set a server's weight (0-1000).", endpoints)
    @OptionGroup var options: AdminOptions
    @OptionGroup var target: ServerArgument
    @Argument(help: "The weight.") var weight: Int

    func run() {
        options.change({ c throws(AdminFailure) in try c.setServer(pool: target.pool, server: target.name, weight: weight) }) { r in
            "\(target.server) weight \(weight); generation \(r.generation)"
        }
    }
}

struct CtlDrain: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.setServer, .status]
    static let configuration = ctlConfiguration("drain", "Stop new requests to a server; with --wait, until its active requests reach zero.", endpoints)
    @OptionGroup var options: AdminOptions
    @OptionGroup var target: ServerArgument
    @Flag(help: "Wait until the server has no active requests.") var wait = false
    @Option(help: "Give up waiting after this many seconds (exit 1).") var timeout: Double = 300

    func run() {
        let answers = AnswerLog()
        let r = options.call(options.client(answers: answers)) { c throws(AdminFailure) in
            try c.setServer(pool: target.pool, server: target.name, state: .drain)
        }
        let answer = answers.last ?? Data()
        guard wait else {
            if options.json { printDocument(answer) } else { print("\(target.server) draining; generation \(r.generation)") }
            return
        }
        if !options.json { print("\(target.server) draining; generation \(r.generation)") }
        let end = Date().addingTimeInterval(timeout)
        while true {
            let s = options.call { c throws(AdminFailure) in try c.status() }
            let active = s.servers(target.pool).first { $0.name == target.name }?.activeRequests ?? 0
            if active == 0 {
                if options.json {
                    // The change's answer, and that the wait ended with the server drained.
                    var object = ((try? JSONSerialization.jsonObject(with: answer)) as? [String: Any]) ?? [:]
                    object["drained"] = true
                    printJSON(object)
                } else {
                    print("\(target.server) drained")
                }
                return
            }
            if !options.json { print("\(target.server): \(active) active request(s)") }
            if Date() > end {
                CtlFailure(code: 1, message: "\(target.server) still has \(active) active request(s) after \(timeout) s").exit()
            }
            usleep(500_000)
        }
    }
}

struct CtlUndrain: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.setServer]
    static let configuration = ctlConfiguration("undrain", "Put a drained (or maintenance) server back in rotation.", endpoints)
    @OptionGroup var options: AdminOptions
    @OptionGroup var target: ServerArgument

    func run() {
        options.change({ c throws(AdminFailure) in try c.setServer(pool: target.pool, server: target.name, state: .ready) }) { r in
            "\(target.server) ready; generation \(r.generation)"
        }
    }
}

struct CtlMaint: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.setServer]
    static let configuration = ctlConfiguration("maint", "Take a server out of rotation entirely (maintenance); undrain puts it back.", endpoints)
    @OptionGroup var options: AdminOptions
    @OptionGroup var target: ServerArgument

    func run() {
        options.change({ c throws(AdminFailure) in try c.setServer(pool: target.pool, server: target.name, state: .maint) }) { r in
            "\(target.server) in maintenance; generation \(r.generation)"
        }
    }
}

extension ServerState: ExpressibleByArgument {}

struct CtlAddServer: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.addServer]
    static let configuration = ctlConfiguration("add-server", "Add a server to a pool (kept across restarts).", endpoints)
    @OptionGroup var options: AdminOptions
    @OptionGroup var target: ServerArgument
    @Argument(help: ArgumentHelp("Its address, HOST:PORT.", valueName: "address")) var address: String
    @Option(help: "Its weight (default 100).") var weight: Int?
    @Option(help: "Its state: ready, drain or maint (default ready).") var state: ServerState?

    func run() {
        options.change({ c throws(AdminFailure) in
            try c.addServer(pool: target.pool, name: target.name, address: address, weight: weight, state: state)
        }) { r in "added \(target.server) at \(address); generation \(r.generation)" }
    }
}

struct CtlRemoveServer: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.removeServer]
    static let configuration = ctlConfiguration("remove-server", "Remove a drained server that has no request in flight.", endpoints,
                                                discussion: "Drain it first: switchyard ctl drain POOL/SERVER --wait.")
    @OptionGroup var options: AdminOptions
    @OptionGroup var target: ServerArgument

    func run() {
        options.change({ c throws(AdminFailure) in try c.removeServer(pool: target.pool, server: target.name) }) { r in
            "removed \(target.server); generation \(r.generation)"
        }
    }
}

struct CtlVersion: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.setPoolVersion]
    static let configuration = ctlConfiguration("version", "Label the version a pool's servers run (shown in status, metrics and the access log).", endpoints)
    @OptionGroup var options: AdminOptions
    @Argument(help: "The pool.") var pool: String
    @Argument(help: "The version, e.g. v2.4.1 (letters, digits, - _ . +); leave out with --clear.") var version: String?
    @Flag(help: "Remove the pool's version label.") var clear = false

    func validate() throws {
        guard clear != (version != nil) else { throw ValidationError("give a VERSION, or --clear to remove the label") }
    }

    func run() {
        options.change({ c throws(AdminFailure) in try c.setVersion(pool: pool, version: version) }) { r in
            "\(pool) version \(version ?? "cleared"); generation \(r.generation)"
        }
    }
}

// MARK: Locks and reloading

struct CtlLock: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.lock]
    static let configuration = ctlConfiguration("lock", "Take a deploy lock (or renew it with --lock-token); prints its token.", endpoints)
    @OptionGroup var options: AdminOptions
    @Option(help: "Who holds the lock.") var owner: String
    @Option(help: "How long it lasts unless renewed, e.g. 10m.") var ttl: String = "10m"
    @Option(help: "Why.") var reason: String = ""
    @Option(help: "Lock only this service's routing and pools (default: the proxy-wide lock, which covers everything).")
    var service: String?

    func run() {
        options.change({ c throws(AdminFailure) in try c.lock(owner: owner, ttl: ttl, reason: reason, service: service) }) { r in r.token ?? "" }
    }
}

struct CtlUnlock: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.unlock]
    static let configuration = ctlConfiguration("unlock", "Release a deploy lock (its token via --lock-token, or --force).", endpoints)
    @OptionGroup var options: AdminOptions
    @Flag(help: "Break someone else's lock (recorded in the audit trail).") var force = false
    @Option(help: "With --force: break this service's lock (default: the proxy-wide lock).") var service: String?

    func run() {
        options.change({ c throws(AdminFailure) in try c.unlock(force: force, service: service) }) { _ in "unlocked" }
    }
}

struct CtlReload: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.reload]
    static let configuration = ctlConfiguration(
        "reload", "Read the configuration file again and apply it in place (like SIGHUP).", endpoints,
        discussion: "Runtime changes are kept unless --reset. An invalid file is refused (exit 1) with every problem, and the running configuration stays.")
    @OptionGroup var options: AdminOptions
    @Flag(help: "Drop the runtime changes: route exactly as the file says.") var reset = false

    func run() {
        options.change({ c throws(AdminFailure) in try c.reload(reset: reset) }) { r in
            (["reloaded; generation \(r.generation)"] + r.notes.map { "note: \($0)" }).joined(separator: "\n")
        }
    }
}

// MARK: Reading

struct CtlAudit: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.audit]
    static let configuration = ctlConfiguration("audit", "Show the audit trail.", endpoints)
    @OptionGroup var options: AdminOptions
    @Option(help: "How many entries.") var limit: Int = 50

    func run() {
        if options.json {
            // The entries as the proxy wrote them, `before` and `after` included.
            let document = options.call { c throws(AdminFailure) in try c.document(.audit, query: [("limit", "\(limit)")]) }
            let object = (try? JSONSerialization.jsonObject(with: document)) as? [String: Any]
            printJSON(object?["entries"] ?? [Any]())
            return
        }
        for e in options.call({ c throws(AdminFailure) in try c.audit(limit: limit) }) {
            let who = [e.actor, e.actorLabel].compactMap { $0 }.joined(separator: " / ")
            print("\(e.time)  gen \(e.generation.map { "\($0)" } ?? "")  \(who)  \(e.action) \(e.target)")
        }
    }
}

struct CtlMetrics: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.metrics]
    static let configuration = ctlConfiguration("metrics", "Print the Prometheus metrics.", endpoints,
                                                discussion: "With --json: one object per sample, {\"name\", \"labels\", \"value\"}.")
    @OptionGroup var options: AdminOptions

    func run() {
        let text = options.call { c throws(AdminFailure) in try c.metrics() }
        guard options.json else { print(text, terminator: text.hasSuffix("\n") ? "" : "\n"); return }
        let samples = PrometheusText.samples(text).map { sample -> [String: Any] in
            ["name": sample.name, "labels": sample.labels, "value": sample.value.isFinite ? sample.value as Any : "\(sample.value)"]
        }
        printJSON(samples)
    }
}

/// The samples of Prometheus text (comments and malformed lines skipped).
enum PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    static func samples(_ text: String) -> [Sample] {
        text.split(separator: "\n").compactMap { line in
            line.hasPrefix("#") ? nil : sample(Substring(line))
        }
    }

    /// `name{a="x",b="y"} 12.5 [timestamp]`.
    static func sample(_ line: Substring) -> Sample? {
        var labels: [String: String] = [:]
        var rest: Substring
        let name: Substring
        if let brace = line.firstIndex(of: "{") {
            name = line[..<brace]
            rest = line[line.index(after: brace)...]
            // Label pairs: NAME="VALUE" with \\, \" and \n escapes, separated by commas.
            while true {
                rest = rest.drop { $0 == "," || $0 == " " }
                if rest.first == "}" { rest = rest.dropFirst(); break }
                guard let equals = rest.firstIndex(of: "=") else { return nil }
                let key = String(rest[..<equals])
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { return nil }
                rest = rest.dropFirst()
                var value = ""
                var escaped = false
                var closed = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if escaped { value.append(c == "n" ? "\n" : c); escaped = false }
                    else if c == "\\" { escaped = true }
                    else if c == "\"" { closed = true; break }
                    else { value.append(c) }
                }
                guard closed else { return nil }
                labels[key] = value
            }
        } else {
            guard let space = line.firstIndex(of: " ") else { return nil }
            name = line[..<space]
            rest = line[space...]
        }
        let fields = rest.split(separator: " ")
        guard !name.isEmpty, let first = fields.first else { return nil }
        let value: Double?
        switch first {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default: value = Double(first)
        }
        guard let value else { return nil }
        return Sample(name: String(name), labels: labels, value: value)
    }
}
