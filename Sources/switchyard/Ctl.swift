import ArgumentParser
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardAdminClient
import SwitchyardRouting

/// `switchyard ctl`: the admin API for operators and pipelines. Exit codes: 0 done;
/// 1 refused by Switchyard (the reason on one line on stderr); 2 cannot reach it or bad usage.
struct Ctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operate a running Switchyard through its admin socket.",
        discussion: "The socket is --admin PATH, else $SWITCHYARD_ADMIN, else /run/switchyard/admin.sock.",
        subcommands: [CtlStatus.self, CtlFlip.self, CtlCanary.self, CtlRollback.self, CtlWeight.self,
                      CtlDrain.self, CtlUndrain.self, CtlVersion.self, CtlLock.self, CtlUnlock.self, CtlAudit.self])
}

struct AdminOptions: ParsableArguments {
    @Option(help: "The admin socket (default: $SWITCHYARD_ADMIN or /run/switchyard/admin.sock).")
    var admin: String?

    @Option(help: "Who is acting, recorded in the audit trail (X-Switchyard-Actor).")
    var actor: String?

    @Option(help: "The deploy lock's token, when the state is locked (default: $SWITCHYARD_LOCK_TOKEN).")
    var lockToken: String?

    @Option(help: "Refuse the change unless the state is still at this generation (If-Match).")
    var ifMatch: UInt64?

    var socketPath: String {
        admin ?? ProcessInfo.processInfo.environment["SWITCHYARD_ADMIN"] ?? "/run/switchyard/admin.sock"
    }

    /// The admin API over the socket, with the headers the options give.
    var client: AdminAPIClient {
        AdminAPIClient(target: .unix(socketPath), actor: actor,
                       lockToken: lockToken ?? ProcessInfo.processInfo.environment["SWITCHYARD_LOCK_TOKEN"],
                       ifMatch: ifMatch, timeout: 30)
    }

    /// Makes one call; returns its answer, or exits: 1 with the proxy's reason when it refuses,
    /// 2 when it cannot be reached.
    func call<T>(_ body: (AdminAPIClient) throws(AdminFailure) -> T) -> T {
        do {
            return try body(client)
        } catch {
            switch error {
            case .refused(_, let error, let detail):
                FileHandle.standardError.write(Data("switchyard ctl: \(error): \(detail)\n".utf8))
                Glibc.exit(1)
            case .unreachable(let reason):
                ctlFail("admin socket: \(reason); is Switchyard running with admin.socket set, and may you open it?")
            }
        }
    }
}

func ctlFail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("switchyard ctl: \(message)\n".utf8))
    Glibc.exit(2)
}

func printJSON(_ object: Any) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Microseconds as JSON gave them: a whole number without a fraction.
func micros(_ value: Double) -> String {
    value.isFinite && value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
}

/// Splits POOL/SERVER.
func poolAndServer(_ text: String) -> (String, String) {
    let parts = text.split(separator: "/", maxSplits: 1)
    guard parts.count == 2 else { ctlFail("\(text) is not POOL/SERVER") }
    return (String(parts[0]), String(parts[1]))
}

struct CtlStatus: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show services, pools, servers and the lock.")
    @OptionGroup var options: AdminOptions
    @Flag(help: "Print the JSON document instead of tables.") var json = false

    /// Pads `text` to `width`; longer text is kept whole (with one space after it), never cut.
    static func column(_ text: String, width: Int) -> String {
        text.count >= width ? text + " " : text.padding(toLength: width, withPad: " ", startingAt: 0)
    }

    func run() {
        if json {
            // The proxy's own document, as it wrote it.
            print(String(decoding: options.call { c throws(AdminFailure) in try c.document(.status) }, as: UTF8.self))
            return
        }
        let s = options.call { c throws(AdminFailure) in try c.status() }
        print("generation \(s.generation)")
        for lock in s.allLocks {
            let what = lock.service.map { "service \($0) LOCKED" } ?? "LOCKED (proxy-wide)"
            print("\(what) by \(lock.owner) since \(lock.since) until \(lock.expires): \(lock.reason)")
        }
        print("\nSERVICE          ACTIVE       STANDBY      CANARY")
        for (name, v) in s.services.sorted(by: { $0.key < $1.key }) {
            let canary = v.canary.map { "\($0.pool)@\($0.weight)" } ?? "-"
            print(Self.column(name, width: 16) + " " + Self.column(v.active, width: 12)
                  + " " + Self.column(v.standby ?? "-", width: 12) + " " + canary)
        }
        print("\nPOOL             VERSION")
        for (pool, value) in s.pools.sorted(by: { $0.key < $1.key }) {
            print(Self.column(pool, width: 16) + " " + (value.version ?? "-"))
        }
        print("\nSERVER                 ADDRESS                WEIGHT    EFF  STATE  HEALTH       ACTIVE  CONNS  REQUESTS   5XX  EJECTED  LAST CHECK")
        for (pool, value) in s.pools.sorted(by: { $0.key < $1.key }) {
            for server in value.servers {
                var last = server.health?.lastResult ?? "-"
                if let cpu = server.health?.reportedLoad?.cpu {
                    last += String(format: ", cpu %.0f%%", cpu * 100)
                }
                print(Self.column("\(pool)/\(server.name)", width: 22) + " "
                      + Self.column(server.address, width: 22)
                      + String(format: " %6d %6d  ", server.weight, server.effectiveWeight ?? 0)
                      + Self.column(server.state, width: 6) + " "
                      + Self.column(server.health?.status ?? "-", width: 12)
                      + String(format: " %6d %6d %9d %5d %8d  ", server.activeRequests, server.openConnections ?? 0, server.requests ?? 0,
                               server.responses?["5xx"] ?? 0, server.ejectedInWorkers ?? 0) + last)
            }
        }
        Self.printNames(s)
    }
}

struct CtlFlip: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flip", abstract: "Swap a service's active and standby pools atomically.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "Make this pool active (default: the standby).") var to: String?

    func run() {
        let r = options.call { c throws(AdminFailure) in try c.flip(service: service, to: to) }
        print("flipped \(service); generation \(r.generation) acknowledged by every worker in \(micros(r.acknowledgedMicroseconds)) us")
    }
}

struct CtlCanary: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "canary", abstract: "Set a service's canary pool and weight (0% removes it).")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "The canary pool.") var pool: String?
    @Option(help: "The share, e.g. 5% or 0.25%.") var weight: String
    @Option(help: "Arm the canary guard: the error share (5xx and failed exchanges) at which the proxy removes the canary, e.g. 50%.")
    var guardErrorRate: String?
    @Option(help: "With --guard-error-rate: finished requests needed in the window (default 20).") var guardMinRequests: Int?
    @Option(help: "With --guard-error-rate: the window, e.g. 10s (default 10s).") var guardWindow: String?
    @Flag(help: "Disarm the canary guard.") var noGuard = false

    func run() {
        var guardrail: AdminSetting<GuardBody>? = noGuard ? .clear : nil
        if let guardErrorRate {
            guardrail = .set(GuardBody(maxErrorRate: guardErrorRate, minRequests: guardMinRequests, window: guardWindow))
        } else if guardMinRequests != nil || guardWindow != nil {
            ctlFail("--guard-min-requests and --guard-window need --guard-error-rate")
        }
        let r = options.call { c throws(AdminFailure) in try c.setCanary(service: service, pool: pool, weight: weight, guardrail: guardrail) }
        print("canary of \(service) set to \(weight); generation \(r.generation)")
    }
}

struct CtlRollback: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollback", abstract: "Restore a service's previous routing (repeat to walk back).")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String

    func run() {
        let r = options.call { c throws(AdminFailure) in try c.rollback(service: service) }
        print("rolled back \(service); generation \(r.generation)")
    }
}

struct CtlWeight: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "weight", abstract: "Set a server's weight (0-1000).")
    @OptionGroup var options: AdminOptions
    @Argument(help: "POOL/SERVER") var server: String
    @Argument(help: "The weight.") var weight: Int

    func run() {
        let (pool, name) = poolAndServer(server)
        let r = options.call { c throws(AdminFailure) in try c.setServer(pool: pool, server: name, weight: weight) }
        print("\(server) weight \(weight); generation \(r.generation)")
    }
}

struct CtlDrain: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drain", abstract: "Stop new requests to a server; with --wait, until its active requests reach zero.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "POOL/SERVER") var server: String
    @Flag(help: "Wait until the server has no active requests.") var wait = false
    @Option(help: "Give up waiting after this many seconds (exit 1).") var timeout: Double = 300

    func run() {
        let (pool, name) = poolAndServer(server)
        let r = options.call { c throws(AdminFailure) in try c.setServer(pool: pool, server: name, state: .drain) }
        print("\(server) draining; generation \(r.generation)")
        guard wait else { return }
        let end = Date().addingTimeInterval(timeout)
        while true {
            let s = options.call { c throws(AdminFailure) in try c.status() }
            let active = s.servers(pool).first { $0.name == name }?.activeRequests ?? 0
            print("\(server): \(active) active request(s)")
            if active == 0 { print("\(server) drained"); return }
            if Date() > end {
                FileHandle.standardError.write(Data("switchyard ctl: \(server) still has \(active) active request(s) after \(timeout) s\n".utf8))
                Glibc.exit(1)
            }
            usleep(500_000)
        }
    }
}

struct CtlUndrain: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "undrain", abstract: "Put a drained server back in rotation.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "POOL/SERVER") var server: String

    func run() {
        let (pool, name) = poolAndServer(server)
        let r = options.call { c throws(AdminFailure) in try c.setServer(pool: pool, server: name, state: .ready) }
        print("\(server) ready; generation \(r.generation)")
    }
}

struct CtlVersion: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version",
                                                    abstract: "Label the version a pool's servers run (shown in status, metrics and the access log).")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The pool.") var pool: String
    @Argument(help: "The version, e.g. v2.4.1 (letters, digits, - _ . +); leave out with --clear.") var version: String?
    @Flag(help: "Remove the pool's version label.") var clear = false

    func run() {
        guard clear != (version != nil) else { ctlFail("give a VERSION, or --clear to remove the label") }
        let r = options.call { c throws(AdminFailure) in try c.setVersion(pool: pool, version: version) }
        print("\(pool) version \(version ?? "cleared"); generation \(r.generation)")
    }
}

struct CtlLock: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lock", abstract: "Take a deploy lock (or renew it with --lock-token); prints its token.")
    @OptionGroup var options: AdminOptions
    @Option(help: "Who holds the lock.") var owner: String
    @Option(help: "How long it lasts unless renewed, e.g. 10m.") var ttl: String = "10m"
    @Option(help: "Why.") var reason: String = ""
    @Option(help: "Lock only this service's routing and pools (default: the proxy-wide lock, which covers everything).")
    var service: String?

    func run() {
        let r = options.call { c throws(AdminFailure) in try c.lock(owner: owner, ttl: ttl, reason: reason, service: service) }
        print(r.token ?? "")
    }
}

struct CtlUnlock: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unlock", abstract: "Release a deploy lock (its token via --lock-token, or --force).")
    @OptionGroup var options: AdminOptions
    @Flag(help: "Break someone else's lock (recorded in the audit trail).") var force = false
    @Option(help: "With --force: break this service's lock (default: the proxy-wide lock).") var service: String?

    func run() {
        options.call { c throws(AdminFailure) in try c.unlock(force: force, service: service) }
        print("unlocked")
    }
}

struct CtlAudit: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Show the audit trail.")
    @OptionGroup var options: AdminOptions
    @Option(help: "How many entries.") var limit: Int = 50
    @Flag(help: "Print JSON.") var json = false

    func run() {
        if json {
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
