import ArgumentParser
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardAdminClient
import SwitchyardConfig

struct CtlStatus: CtlCommand {
    static let endpoints: [AdminEndpoint.ID] = [.status]
    static let configuration = ctlConfiguration(
        "status", "Show services, pools, servers and the locks.", endpoints,
        discussion: """
            With --watch, the view is drawn again every --interval until Ctrl-C (exit 0). On a terminal the screen is \
            redrawn; otherwise each view that changed is printed after the last, as a block of text followed by an empty \
            line, or with --json as one JSON document per line.
            """)
    @OptionGroup var options: AdminOptions
    @Flag(help: "Draw the view again every --interval until interrupted.") var watch = false
    @Option(help: "With --watch: how often, e.g. 2s or 500ms.") var interval: String = "2s"
    @Option(help: "Only this service and the pools it routes to (quicker on a proxy with many services).") var service: String?

    /// Pads `text` to `width`; longer text is kept whole (with one space after it), never cut.
    static func column(_ text: String, width: Int) -> String {
        text.count >= width ? text + " " : text.padding(toLength: width, withPad: " ", startingAt: 0)
    }

    func validate() throws {
        guard let d = DurationText.parse(interval), d.milliseconds >= 100 else {
            throw ValidationError("--interval \(interval) is not a duration of at least 100ms, e.g. 2s or 500ms")
        }
    }

    func run() {
        guard watch else {
            switch view(options.client(), compact: false) {
            case .success(let text): print(text)
            case .failure(let failure): failure.exit()
            }
            return
        }
        let milliseconds = DurationText.parse(interval)?.milliseconds ?? 2000
        // Ctrl-C ends the watch: every view is flushed when drawn, so nothing is lost.
        signal(SIGINT) { _ in _exit(0) }
        let terminal = isatty(STDOUT_FILENO) == 1
        let client = options.client()
        var last: String? = nil
        var lastFailure: String? = nil
        while true {
            switch view(client, compact: true) {
            case .success(let text):
                lastFailure = nil
                if terminal {
                    let time = ISO8601DateFormatter().string(from: Date())
                    print("\u{1B}[H\u{1B}[2J" + "Every \(interval): switchyard ctl status (\(options.address))   \(time)\n\n" + text)
                } else if comparable(text) != last.map(comparable) {
                    print(options.json ? text : text + "\n")
                }
                last = text
            case .failure(let failure):
                // The proxy may be restarting: say so once, and keep watching.
                if failure.code == 2 && failure.message.contains("(401)") { failure.exit() }
                if failure.message != lastFailure {
                    FileHandle.standardError.write(Data("switchyard ctl: \(failure.message) (still watching)\n".utf8))
                    lastFailure = failure.message
                }
            }
            fflush(nil)
            usleep(UInt32(clamping: milliseconds * 1000))
        }
    }

    /// What decides whether a view changed: the JSON document without its uptime, which
    /// moves every second; the text as it is.
    func comparable(_ text: String) -> String {
        guard options.json, var object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else { return text }
        object["uptime_seconds"] = nil
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? text
    }

    /// The status view: with --json the proxy's document (on one line when `compact`), else the tables.
    func view(_ client: AdminAPIClient, compact: Bool) -> Result<String, CtlFailure> {
        if options.json {
            let query = service.map { [("service", $0)] } ?? []
            let answer = options.attempt(client) { c throws(AdminFailure) in try c.document(.status, query: query) }
            return answer.map { data in
                if compact, let object = try? JSONSerialization.jsonObject(with: data),
                   let line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                    return String(decoding: line, as: UTF8.self)
                }
                // The proxy's own document, as it wrote it.
                return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return options.attempt(client) { c throws(AdminFailure) in
            if let service { return try c.status(service: service) }
            return try c.status()
        }.map(Self.tables)
    }

    static func tables(_ s: AdminStatus) -> String {
        var lines = ["generation \(s.generation)"]
        for lock in s.allLocks {
            let what = lock.service.map { "service \($0) LOCKED" } ?? "LOCKED (proxy-wide)"
            lines.append("\(what) by \(lock.owner) since \(lock.since) until \(lock.expires): \(lock.reason)")
        }
        lines += ["", "SERVICE          ACTIVE       STANDBY      CANARY"]
        for (name, v) in s.services.sorted(by: { $0.key < $1.key }) {
            let canary = v.canary.map { "\($0.pool)@\($0.weight)" } ?? "-"
            lines.append(column(name, width: 16) + " " + column(v.active, width: 12) + " " + column(v.standby ?? "-", width: 12) + " " + canary)
        }
        lines += ["", "POOL             VERSION"]
        for (pool, value) in s.pools.sorted(by: { $0.key < $1.key }) {
            lines.append(column(pool, width: 16) + " " + (value.version ?? "-"))
        }
        lines += ["", "SERVER                 ADDRESS                WEIGHT    EFF  STATE  HEALTH       ACTIVE  CONNS  REQUESTS   5XX  EJECTED  LAST CHECK"]
        for (pool, value) in s.pools.sorted(by: { $0.key < $1.key }) {
            for server in value.servers {
                var last = server.health?.lastResult ?? "-"
                if let cpu = server.health?.reportedLoad?.cpu {
                    last += String(format: ", cpu %.0f%%", cpu * 100)
                }
                lines.append(column("\(pool)/\(server.name)", width: 22) + " "
                             + column(server.address, width: 22)
                             + String(format: " %6d %6d  ", server.weight, server.effectiveWeight ?? 0)
                             + column(server.state, width: 6) + " "
                             + column(server.health?.status ?? "-", width: 12)
                             + String(format: " %6d %6d %9d %5d %8d  ", server.activeRequests, server.openConnections ?? 0, server.requests ?? 0,
                                      server.responses?["5xx"] ?? 0, server.ejectedInWorkers ?? 0) + last)
            }
        }
        return (lines + names(s)).joined(separator: "\n")
    }
}
