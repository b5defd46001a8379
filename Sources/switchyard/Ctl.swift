import ArgumentParser
import Foundation
import Glibc
import SwitchyardDeploy

/// `switchyard ctl`: the admin API for operators and pipelines. Exit codes: 0 done;
/// 1 refused by Switchyard (the reason on one line on stderr); 2 cannot reach it or bad usage.
struct Ctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operate a running Switchyard through its admin socket.",
        discussion: "The socket is --admin PATH, else $SWITCHYARD_ADMIN, else /run/switchyard/admin.sock.",
        subcommands: [CtlStatus.self, CtlFlip.self, CtlCanary.self, CtlRollback.self, CtlWeight.self,
                      CtlDrain.self, CtlUndrain.self, CtlLock.self, CtlUnlock.self, CtlAudit.self])
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

    /// Sends one request; returns the decoded JSON object, or exits with the error's detail.
    func call(_ method: String, _ path: String, body: [String: Any]? = nil) -> [String: Any] {
        var headers: [(String, String)] = []
        if let actor { headers.append(("X-Switchyard-Actor", actor)) }
        if let token = lockToken ?? ProcessInfo.processInfo.environment["SWITCHYARD_LOCK_TOKEN"] { headers.append(("X-Switchyard-Lock", token)) }
        if let ifMatch { headers.append(("If-Match", "\(ifMatch)")) }
        var payload: Data? = nil
        if let body {
            payload = (try? JSONSerialization.data(withJSONObject: body)) ?? Data()
            headers.append(("Content-Type", "application/json"))
        }
        let response = exchange(method, path, headers: headers, body: payload)
        let object = response.json
        if response.status != 200 {
            let error = object["error"] as? String ?? "HTTP \(response.status)"
            let detail = object["detail"] as? String ?? String(decoding: response.body, as: UTF8.self)
            FileHandle.standardError.write(Data("switchyard ctl: \(error): \(detail)\n".utf8))
            Glibc.exit(1)
        }
        return object
    }

    /// One request over the admin socket, with the client the orchestrator uses too.
    private func exchange(_ method: String, _ path: String, headers: [(String, String)], body: Data?) -> HTTPResponse {
        do {
            return try HTTPClient.send(to: .unix(socketPath), method: method, path: path, headers: headers, body: body, timeout: 30)
        } catch {
            ctlFail("admin socket: \(error.description); is Switchyard running with admin.socket set, and may you open it?")
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
        let s = options.call("GET", "/v1/status")
        if json { printJSON(s); return }
        print("generation \(s["generation"] ?? "?")")
        if let lock = s["lock"] as? [String: Any] {
            print("LOCKED by \(lock["owner"] ?? "?") since \(lock["since"] ?? "?") until \(lock["expires"] ?? "?"): \(lock["reason"] ?? "")")
        }
        print("\nSERVICE          ACTIVE       STANDBY      CANARY")
        for (name, value) in ((s["services"] as? [String: Any]) ?? [:]).sorted(by: { $0.key < $1.key }) {
            let v = value as? [String: Any] ?? [:]
            let canary = (v["canary"] as? [String: Any]).map { "\($0["pool"] ?? "")@\($0["weight"] ?? "")" } ?? "-"
            let standby = v["standby"] as? String ?? "-"
            print(Self.column(name, width: 16) + " " + Self.column("\(v["active"] ?? "")", width: 12)
                  + " " + Self.column(standby, width: 12) + " " + canary)
        }
        print("\nSERVER                 ADDRESS                WEIGHT    EFF  STATE  HEALTH       ACTIVE  CONNS  REQUESTS   5XX  EJECTED  LAST CHECK")
        for (pool, value) in ((s["pools"] as? [String: Any]) ?? [:]).sorted(by: { $0.key < $1.key }) {
            for server in ((value as? [String: Any])?["servers"] as? [[String: Any]]) ?? [] {
                let responses = server["responses"] as? [String: Any] ?? [:]
                let health = server["health"] as? [String: Any] ?? [:]
                let name = "\(pool)/\(server["name"] ?? "")"
                var last = health["last_result"] as? String ?? "-"
                if let load = health["reported_load"] as? [String: Any], let cpu = load["cpu"] as? Double {
                    last += String(format: ", cpu %.0f%%", cpu * 100)
                }
                print(Self.column(name, width: 22) + " "
                      + Self.column("\(server["address"] ?? "")", width: 22)
                      + String(format: " %6d %6d  ", server["weight"] as? Int ?? 0, server["effective_weight"] as? Int ?? 0)
                      + Self.column("\(server["state"] ?? "")", width: 6) + " "
                      + Self.column("\(health["status"] ?? "-")", width: 12)
                      + String(format: " %6d %6d %9d %5d %8d  ", server["active_requests"] as? Int ?? 0,
                               server["open_connections"] as? Int ?? 0, server["requests"] as? Int ?? 0,
                               responses["5xx"] as? Int ?? 0, server["ejected_in_workers"] as? Int ?? 0) + last)
            }
        }
    }
}

struct CtlFlip: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flip", abstract: "Swap a service's active and standby pools atomically.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "Make this pool active (default: the standby).") var to: String?

    func run() {
        let r = options.call("POST", "/v1/services/\(service)/flip", body: to.map { ["to": $0] } ?? [:])
        print("flipped \(service); generation \(r["generation"] ?? "?") acknowledged by every worker in \(r["acknowledged_us"] ?? "?") us")
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
        var body: [String: Any] = ["weight": weight]
        if let pool { body["pool"] = pool }
        if noGuard { body["guard"] = NSNull() }
        if let guardErrorRate {
            var g: [String: Any] = ["max_error_rate": guardErrorRate]
            if let guardMinRequests { g["min_requests"] = guardMinRequests }
            if let guardWindow { g["window"] = guardWindow }
            body["guard"] = g
        } else if guardMinRequests != nil || guardWindow != nil {
            ctlFail("--guard-min-requests and --guard-window need --guard-error-rate")
        }
        let r = options.call("PUT", "/v1/services/\(service)/canary", body: body)
        print("canary of \(service) set to \(weight); generation \(r["generation"] ?? "?")")
    }
}

struct CtlRollback: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollback", abstract: "Restore a service's previous routing (repeat to walk back).")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String

    func run() {
        let r = options.call("POST", "/v1/services/\(service)/rollback")
        print("rolled back \(service); generation \(r["generation"] ?? "?")")
    }
}

struct CtlWeight: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "weight", abstract: "Set a server's weight (0-1000).")
    @OptionGroup var options: AdminOptions
    @Argument(help: "POOL/SERVER") var server: String
    @Argument(help: "The weight.") var weight: Int

    func run() {
        let (pool, name) = poolAndServer(server)
        let r = options.call("PUT", "/v1/pools/\(pool)/servers/\(name)", body: ["weight": weight])
        print("\(server) weight \(weight); generation \(r["generation"] ?? "?")")
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
        let r = options.call("PUT", "/v1/pools/\(pool)/servers/\(name)", body: ["state": "drain"])
        print("\(server) draining; generation \(r["generation"] ?? "?")")
        guard wait else { return }
        let end = Date().addingTimeInterval(timeout)
        while true {
            let s = options.call("GET", "/v1/status")
            let servers = ((s["pools"] as? [String: Any])?[pool] as? [String: Any])?["servers"] as? [[String: Any]] ?? []
            let active = servers.first { $0["name"] as? String == name }?["active_requests"] as? Int ?? 0
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
        let r = options.call("PUT", "/v1/pools/\(pool)/servers/\(name)", body: ["state": "ready"])
        print("\(server) ready; generation \(r["generation"] ?? "?")")
    }
}

struct CtlLock: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lock", abstract: "Take the deploy lock; prints its token.")
    @OptionGroup var options: AdminOptions
    @Option(help: "Who holds the lock.") var owner: String
    @Option(help: "How long it lasts unless renewed, e.g. 10m.") var ttl: String = "10m"
    @Option(help: "Why.") var reason: String = ""

    func run() {
        let r = options.call("POST", "/v1/lock", body: ["owner": owner, "ttl": ttl, "reason": reason])
        print(r["token"] as? String ?? "")
    }
}

struct CtlUnlock: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unlock", abstract: "Release the deploy lock (its token via --lock-token, or --force).")
    @OptionGroup var options: AdminOptions
    @Flag(help: "Break someone else's lock (recorded in the audit trail).") var force = false

    func run() {
        _ = options.call("DELETE", force ? "/v1/lock?force=true" : "/v1/lock")
        print("unlocked")
    }
}

struct CtlAudit: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Show the audit trail.")
    @OptionGroup var options: AdminOptions
    @Option(help: "How many entries.") var limit: Int = 50
    @Flag(help: "Print JSON.") var json = false

    func run() {
        let r = options.call("GET", "/v1/audit?limit=\(limit)")
        let entries = r["entries"] as? [[String: Any]] ?? []
        if json { printJSON(entries); return }
        for e in entries {
            let who = [e["actor"] as? String, e["actor_label"] as? String].compactMap { $0 }.joined(separator: " / ")
            print("\(e["time"] ?? "")  gen \(e["generation"] ?? "")  \(who)  \(e["action"] ?? "") \(e["target"] ?? "")")
        }
    }
}
