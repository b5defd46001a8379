import Foundation
import Glibc

/// The bootstrap admin token every console the tests start accepts.
let consoleAdminToken = "test-admin-token-0123456789"

/// A `switchyard console` on a free loopback port, with its own database (SQLite in its
/// directory unless `database` is given) and data directory.
final class ConsoleProcess {
    let process: ManagedProcess
    let url: String
    let directory: String

    init(directory: String, database: String? = nil, plans: [String] = [], config: String? = nil, label: String = "console",
         listen: String = "127.0.0.1:0", extraEnvironment: [String] = []) throws {
        self.directory = directory
        var arguments = ["console", "--listen", listen, "--database", database ?? "sqlite:\(directory)/console.sqlite",
                         "--data-dir", "\(directory)/\(label)-data"]
        for plan in plans { arguments += ["--plan", plan] }
        if let config {
            let path = "\(directory)/\(label).yaml"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            arguments += ["--config", path]
        }
        process = try ManagedProcess(arguments, directory: directory, label: label,
                                     launcher: ["/usr/bin/env", "SWITCHYARD_CONSOLE_ADMIN_TOKEN=\(consoleAdminToken)"] + extraEnvironment)
        let end = Date().addingTimeInterval(60)
        var found: String?
        while Date() < end, found == nil {
            if let range = process.stdout.range(of: #"listening on (https?://[0-9.:\[\]a-z]+)"#, options: .regularExpression) {
                found = String(process.stdout[range].dropFirst("listening on ".count))
                break
            }
            if !process.isRunning { throw HarnessError("the console exited: \(process.stderr)") }
            usleep(20_000)
        }
        guard let found else { throw HarnessError("the console did not start listening within 60s: \(process.stdout) \(process.stderr)") }
        url = found
    }

    /// An API call with curl: the status and the parsed JSON body (or the raw text in "text").
    @discardableResult
    func call(_ method: String, _ path: String, body: String? = nil, token: String? = consoleAdminToken,
              headers: [String] = []) throws -> (status: Int, json: [String: Any], text: String) {
        var arguments = ["-s", "-S", "-X", method, "-w", "\n%{http_code}", "--max-time", "70"]
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        for header in headers { arguments += ["-H", header] }
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        arguments.append(url + path)
        let r = try curl(arguments)
        guard let newline = r.output.lastIndex(of: "\n"), let status = Int(r.output[r.output.index(after: newline)...]) else {
            throw HarnessError("curl \(method) \(path) failed: \(r.error)")
        }
        let text = String(r.output[..<newline])
        let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
        return (status, json, text)
    }

    /// Polls `GET path` until `condition` holds for its JSON; returns that JSON.
    @discardableResult
    func waitFor(_ path: String, timeout: Double = 60, what: String, _ condition: ([String: Any]) -> Bool) throws -> [String: Any] {
        let end = Date().addingTimeInterval(timeout)
        var last: [String: Any] = [:]
        while Date() < end {
            let r = try call("GET", path)
            last = r.json
            if r.status == 200 && condition(r.json) { return r.json }
            usleep(200_000)
        }
        throw HarnessError("timed out after \(timeout)s waiting for \(what); last \(path): \(last)")
    }

    func rollout(_ id: Int) throws -> [String: Any] {
        (try call("GET", "/api/v1/rollouts/\(id)").json["rollout"] as? [String: Any]) ?? [:]
    }

    func stop() { process.stop() }
    func kill() { process.signal(SIGKILL); _ = process.waitForExit(timeout: 10) }
}
