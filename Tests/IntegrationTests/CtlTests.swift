import Foundation
import Glibc
import Testing

/// `switchyard ctl` end to end: the real binary against a real proxy, over the socket and over
/// HTTP(S) with a token; its JSON, its watch, its exit codes; and the generated man page and
/// shell completions.
@Suite("switchyard ctl", .serialized)
struct CtlTests {
    /// Runs the binary with extra environment variables.
    func switchyard(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, error: String) {
        if environment.isEmpty { return try run(switchyardBinary, arguments) }
        return try run("/usr/bin/env", environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + [switchyardBinary] + arguments)
    }

    func json(_ text: String, _ command: String) throws -> Any {
        do { return try JSONSerialization.jsonObject(with: Data(text.utf8)) } catch {
            throw HarnessError("ctl \(command) --json printed no JSON document: \(text)")
        }
    }

    // MARK: --json on every command

    @Test func everyCommandPrintsTheAnswerAsJSON() throws {
        let s = try SwitchingScenario(secondBlue: true)
        let extra = try s.scenario.upstream("blue3")
        /// Runs `ctl ARGS --json`, expects exit 0, and returns the parsed output.
        func ctl(_ arguments: [String]) throws -> Any {
            let r = try s.ctl(arguments + ["--json"])
            #expect(r.status == 0, "ctl \(arguments): \(r.error)")
            return try json(r.output, arguments.joined(separator: " "))
        }
        func generation(_ arguments: [String]) throws -> Int {
            let answer = try ctl(arguments) as? [String: Any]
            let g = answer?["generation"] as? Int
            #expect(g != nil && answer?["acknowledged_us"] != nil, "ctl \(arguments): \(String(describing: answer))")
            return g ?? -1
        }
        let status = try ctl(["status"]) as? [String: Any]
        var last = try #require(status?["generation"] as? Int)
        // --service: only that service and the pools it routes to.
        let one = try ctl(["status", "--service", "web"]) as? [String: Any]
        #expect((one?["services"] as? [String: Any]).map { Array($0.keys) } == ["web"], "\(String(describing: one))")
        let table = try s.ctl(["status", "--service", "web"])
        #expect(table.status == 0 && table.output.contains("blue/b1") && table.output.contains("green/g1"), "\(table)")
        #expect(try s.ctl(["status", "--service", "nope"]).status != 0)
        func advanced(_ arguments: [String]) throws {
            let g = try generation(arguments)
            #expect(g > last, "ctl \(arguments) answered generation \(g) after \(last)")
            last = g
        }
        try advanced(["canary", "web", "--pool", "green", "--weight", "5%", "--sticky-cookie", "sw_canary", "--guard-error-rate", "50%"])
        try advanced(["rules", "web", "--rule", "header:X-Canary=always@green", "--rule", "cookie:beta=yes@green"])
        let (_, after) = try s.admin("GET", "/v1/status")
        let web = (after["services"] as? [String: Any])?["web"] as? [String: Any]
        #expect((web?["rules"] as? [[String: Any]])?.count == 2, "\(String(describing: web))")
        #expect(((web?["canary"] as? [String: Any])?["sticky"] as? [String: Any])?["cookie"] as? String == "sw_canary")
        try advanced(["rules", "web", "--clear"])
        try advanced(["canary", "web", "--weight", "0%"])
        try advanced(["flip", "web"])
        try advanced(["rollback", "web"])
        try advanced(["weight", "blue/b1", "50"])
        try advanced(["version", "blue", "v2.4.1"])
        try advanced(["version", "blue", "--clear"])
        try advanced(["add-server", "blue/b3", extra.address, "--weight", "20", "--state", "drain"])
        let drained = try ctl(["drain", "blue/b3", "--wait", "--timeout", "10"]) as? [String: Any]
        #expect(drained?["drained"] as? Bool == true && drained?["generation"] is Int, "\(String(describing: drained))")
        try advanced(["maint", "blue/b3"])
        try advanced(["remove-server", "blue/b3"])
        try advanced(["drain", "blue/b2"])
        try advanced(["undrain", "blue/b2"])
        let lock = try ctl(["lock", "--owner", "ops", "--ttl", "1m"]) as? [String: Any]
        let token = try #require(lock?["token"] as? String)
        #expect(lock?["owner"] as? String == "ops")
        let unlocked = try s.ctl(["unlock", "--lock-token", token, "--json"])
        #expect(unlocked.status == 0 && (try? json(unlocked.output, "unlock")) != nil, "\(unlocked)")
        let reload = try ctl(["reload"]) as? [String: Any]
        #expect(reload?["generation"] is Int && reload?["notes"] is [Any], "\(String(describing: reload))")
        let audit = try ctl(["audit", "--limit", "100"]) as? [[String: Any]]
        let actions = Set((audit ?? []).compactMap { $0["action"] as? String })
        for action in ["canary", "rules", "flip", "rollback", "add server", "remove server", "lock", "unlock", "reload", "version"] {
            #expect(actions.contains(action), "no \(action) in the audit trail: \(actions.sorted())")
        }
        let metrics = try ctl(["metrics"]) as? [[String: Any]]
        #expect(metrics?.contains { $0["name"] as? String == "switchyard_generation" && $0["value"] is Double } == true)
        // Text stays the default.
        let text = try s.ctl(["weight", "blue/b1", "60"])
        #expect(text.output.hasPrefix("blue/b1 weight 60; generation "), "\(text.output)")
        // `ctl --json CMD` reads like `ctl CMD --json`.
        let front = try run(switchyardBinary, ["ctl", "--json", "--admin", s.socket, "status"])
        #expect(front.status == 0 && (try? json(front.output, "status")) != nil, "\(front)")
    }

    // MARK: A remote admin API with a token

    @Test func remoteHTTPSAdminWithAToken() throws {
        let dir = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pki = try TestPKI(directory: dir, names: ["admin"], loopback: ["admin"])
        let token = "0123456789abcdef0123"
        try "pipeline \(token)\n".write(toFile: "\(dir)/tokens", atomically: true, encoding: .utf8)
        try "\(token)\n".write(toFile: "\(dir)/token", atomically: true, encoding: .utf8)
        try "wrong-token-wrong-token\n".write(toFile: "\(dir)/wrong", atomically: true, encoding: .utf8)
        let port = freePort()
        let s = try SwitchingScenario(adminExtra: "  tcp: 127.0.0.1:\(port)\n  tokens_file: \(dir)/tokens\n"
                                      + "  tls: { certificates: [{ cert: \(pki.cert("admin")), key: \(pki.key("admin")) }] }")
        let admin = "https://127.0.0.1:\(port)"
        func ctl(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, error: String) {
            let r = try switchyard(["ctl"] + arguments, environment: environment)
            // The token is never printed, whatever happens.
            #expect(!r.output.contains(token) && !r.error.contains(token), "\(r)")
            #expect(!r.output.contains("wrong-token") && !r.error.contains("wrong-token"), "\(r)")
            return r
        }
        // The token from a file, the CA from the command line.
        let status = try ctl(["status", "--json", "--admin", admin, "--ca", pki.ca, "--token-file", "\(dir)/token"])
        #expect(status.status == 0, "\(status.error)")
        #expect((try json(status.output, "status") as? [String: Any])?["generation"] is Int)
        // The token and the address from the environment; a change, audited as the token's name.
        let changed = try ctl(["weight", "blue/b1", "42", "--actor", "run 9"],
                              environment: ["SWITCHYARD_ADMIN": admin, "SWITCHYARD_ADMIN_TOKEN": token, "SWITCHYARD_ADMIN_CA": pki.ca])
        #expect(changed.status == 0 && changed.output.contains("blue/b1 weight 42"), "\(changed)")
        let (_, audit) = try s.admin("GET", "/v1/audit")
        let last = (audit["entries"] as? [[String: Any]])?.last
        #expect(last?["actor"] as? String == "token:pipeline" && last?["actor_label"] as? String == "run 9", "\(String(describing: last))")
        // --token-file wins over the environment.
        let fileWins = try ctl(["status", "--admin", admin, "--ca", pki.ca, "--token-file", "\(dir)/token"],
                               environment: ["SWITCHYARD_ADMIN_TOKEN": "wrong-token-wrong-token"])
        #expect(fileWins.status == 0, "\(fileWins.error)")
        // A wrong token: exit 2, said plainly, the token not repeated.
        let wrong = try ctl(["flip", "web", "--admin", admin, "--ca", pki.ca, "--token-file", "\(dir)/wrong"])
        #expect(wrong.status == 2)
        #expect(wrong.error.contains("refused the token (401)") && wrong.error.contains("--token-file"), "\(wrong.error)")
        // No token at all: exit 2 before connecting.
        let none = try ctl(["status", "--admin", admin, "--ca", pki.ca])
        #expect(none.status == 2 && none.error.contains("needs a token"), "\(none.error)")
        // A certificate the client does not trust: exit 2, pointing at --ca.
        let untrusted = try ctl(["status", "--admin", admin, "--token-file", "\(dir)/token"])
        #expect(untrusted.status == 2 && untrusted.error.contains("--ca"), "\(untrusted.error)")
        // A name the certificate does not hold.
        let misnamed = try ctl(["status", "--admin", admin, "--ca", pki.ca, "--tls-server-name", "other.test", "--token-file", "\(dir)/token"])
        #expect(misnamed.status == 2, "\(misnamed.error)")
        let named = try ctl(["status", "--admin", admin, "--ca", pki.ca, "--tls-server-name", "admin.test", "--token-file", "\(dir)/token"])
        #expect(named.status == 0, "\(named.error)")
        // Plain HTTP off loopback would send the token in clear: refused as bad usage.
        let clear = try ctl(["status", "--admin", "http://192.0.2.1:\(port)", "--token-file", "\(dir)/token"])
        #expect(clear.status == 64 && clear.error.contains("https://"), "\(clear.error)")
        let unreadable = try ctl(["status", "--admin", admin, "--ca", pki.ca, "--token-file", "\(dir)/missing"])
        #expect(unreadable.status == 2 && unreadable.error.contains("\(dir)/missing"), "\(unreadable.error)")
    }

    @Test func loopbackHTTPAdminWithAToken() throws {
        let dir = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "abcdef0123456789abcdef"
        try "ops \(token)\n".write(toFile: "\(dir)/tokens", atomically: true, encoding: .utf8)
        let port = freePort()
        let s = try SwitchingScenario(adminExtra: "  tcp: 127.0.0.1:\(port)\n  tokens_file: \(dir)/tokens")
        let env = ["SWITCHYARD_ADMIN_TOKEN": token]
        let flip = try switchyard(["ctl", "--admin", "http://127.0.0.1:\(port)", "flip", "web", "--json"], environment: env)
        #expect(flip.status == 0, "\(flip.error)")
        #expect((try json(flip.output, "flip") as? [String: Any])?["generation"] is Int)
        #expect(!flip.output.contains(token) && !flip.error.contains(token))
        let (_, status) = try s.admin("GET", "/v1/status")
        #expect(((status["services"] as? [String: Any])?["web"] as? [String: Any])?["active"] as? String == "green")
        // Nothing listens here: exit 2 naming the address.
        let gone = try switchyard(["ctl", "--admin", "http://127.0.0.1:\(freePort())", "status"], environment: env)
        #expect(gone.status == 2 && gone.error.contains("admin API at http://127.0.0.1:"), "\(gone.error)")
    }

    // MARK: --watch

    @Test func watchPrintsEachChangedViewUntilInterrupted() throws {
        let s = try SwitchingScenario()
        let watch = try ManagedProcess(["ctl", "status", "--watch", "--interval", "200ms", "--admin", s.socket],
                                       directory: s.scenario.directory, label: "watch")
        let jsonWatch = try ManagedProcess(["ctl", "status", "--watch", "--json", "--interval", "200ms", "--admin", s.socket],
                                           directory: s.scenario.directory, label: "watch-json")
        /// Each view starts with its generation line.
        func blocks() -> [String] { watch.stdout.components(separatedBy: "generation ").dropFirst().map { "generation " + $0 } }
        func lines() -> [String] { jsonWatch.stdout.split(separator: "\n").map(String.init) }
        func wait(_ condition: () -> Bool) { let end = Date().addingTimeInterval(10); while !condition() && Date() < end { usleep(50_000) } }
        wait { blocks().count >= 1 && lines().count >= 1 }
        // Several intervals without a change print nothing more: no screen clearing, no repeats.
        usleep(1_000_000)
        #expect(blocks().count == 1, "\(watch.stdout)")
        #expect(lines().count == 1, "\(jsonWatch.stdout)")
        #expect(!watch.stdout.contains("\u{1B}["), "escape codes in piped output")
        #expect(watch.stdout.hasPrefix("generation "))
        #expect(s.quickAdmin("PUT", "/v1/pools/blue/servers/b1", body: "{\"weight\": 37}") == 200)
        wait { blocks().count >= 2 && lines().count >= 2 }
        #expect(blocks().count == 2, "\(watch.stdout)")
        #expect(blocks().first?.hasSuffix("\n\n") == true, "a view ends with an empty line")
        let weightColumn = blocks().last.map { $0.split(separator: "\n").first { $0.hasPrefix("blue/b1") } ?? "" } ?? ""
        #expect(weightColumn.split(separator: " ").dropFirst(2).first == "37", "\(weightColumn)")
        let newest = try #require(lines().last)
        let document = try json(newest, "status --watch")
        let servers = (((document as? [String: Any])?["pools"] as? [String: Any])?["blue"] as? [String: Any])?["servers"] as? [[String: Any]]
        #expect(servers?.first?["weight"] as? Int == 37, "\(newest)")
        // Ctrl-C ends both with 0.
        watch.signal(SIGINT)
        jsonWatch.signal(SIGINT)
        #expect(watch.waitForExit(timeout: 5) == 0)
        #expect(jsonWatch.waitForExit(timeout: 5) == 0)
    }

    @Test func watchRedrawsTheScreenOnATerminal() throws {
        let s = try SwitchingScenario()
        // `script` gives the watch a terminal; timeout sends Ctrl-C's SIGINT after 1.5 s.
        let command = "timeout --preserve-status -s INT 1.5 '\(switchyardBinary)' ctl status --watch --interval 200ms --admin '\(s.socket)'"
        let r = try run("/usr/bin/script", ["-q", "-e", "-c", command, "/dev/null"])
        #expect(r.status == 0, "\(r.error)")
        // Redrawn every interval, changed or not: clear screen, a heading, the view.
        let draws = r.output.components(separatedBy: "\u{1B}[H\u{1B}[2J").count - 1
        #expect(draws >= 3, "\(draws) draws: \(r.output)")
        #expect(r.output.contains("Every 200ms: switchyard ctl status (unix://\(s.socket))"))
        #expect(r.output.contains("SERVICE          ACTIVE"))
    }

    // MARK: Exit codes

    @Test func exitCodesAreTheDocumentedOnes() throws {
        let s = try SwitchingScenario()
        // ctl: 0 done, 1 refused, 2 unreachable, 64 usage.
        #expect(try s.ctl(["flip", "web"]).status == 0)
        let refused = try s.ctl(["flip", "nosuch"])
        #expect(refused.status == 1 && refused.error.hasPrefix("switchyard ctl: "), "\(refused.error)")
        let unreachable = try run(switchyardBinary, ["ctl", "status", "--admin", "\(s.scenario.directory)/nothing.sock"])
        #expect(unreachable.status == 2 && unreachable.error.contains("is Switchyard running"), "\(unreachable.error)")
        #expect(try s.ctl(["status", "--no-such-option"]).status == 64)
        #expect(try s.ctl(["weight", "b1", "5"]).status == 64)
        #expect(try s.ctl(["weight", "blue/b1"]).status == 64)
        #expect(try s.ctl(["version", "blue"]).status == 64)
        #expect(try s.ctl(["rules", "web", "--rule", "header:X"]).status == 64)
        #expect(try s.ctl(["status", "--watch", "--interval", "soon"]).status == 64)
        #expect(try run(switchyardBinary, ["ctl", "status", "--admin", "ftp://x:1"]).status == 64)
        // A drain --wait that times out: 1.
        let slow = try RawClient(port: s.proxy.port)
        #expect(try s.ctl(["flip", "web"]).status == 0) // blue active again
        slow.send("GET /sleep/3000 HTTP/1.1\r\nHost: t\r\n\r\n")
        usleep(300_000)
        let timedOut = try s.ctl(["drain", "blue/b1", "--wait", "--timeout", "0.5"])
        #expect(timedOut.status == 1 && timedOut.error.contains("still has 1 active request"), "\(timedOut)")
        // check: 0 valid, 1 invalid, 64 usage.
        let config = s.proxy.configPath
        #expect(try run(switchyardBinary, ["check", "--config", config]).status == 0)
        let broken = "\(s.scenario.directory)/broken.yaml"
        try "pools: {}\nservices: { web: { active: nosuch } }\n".write(toFile: broken, atomically: true, encoding: .utf8)
        #expect(try run(switchyardBinary, ["check", "--config", broken]).status == 1)
        #expect(try run(switchyardBinary, ["check"]).status == 64)
        // run: 1 when the proxy cannot start, 64 usage.
        #expect(try run(switchyardBinary, ["run", "--config", broken]).status == 1)
        #expect(try run(switchyardBinary, ["run", "--bogus"]).status == 64)
        // deploy: 2 for an invalid or missing plan, 64 usage.
        #expect(try run(switchyardBinary, ["deploy", "check", broken]).status == 2)
        #expect(try run(switchyardBinary, ["deploy", "run", "\(s.scenario.directory)/none.yaml", "--version", "v1"]).status == 2)
        #expect(try run(switchyardBinary, ["deploy", "run"]).status == 64)
        #expect(try run(switchyardBinary, ["nosuch-command"]).status == 64)
        #expect(try run(switchyardBinary, ["--help"]).status == 0)
    }

    @Test func versionFlagAndVersionCommand() throws {
        let flag = try run(switchyardBinary, ["--version"])
        let command = try run(switchyardBinary, ["version"])
        #expect(flag.status == 0 && command.status == 0)
        #expect(flag.output.hasPrefix("switchyard ") && flag.output == command.output, "\(flag.output) / \(command.output)")
        // `version --ticket --module` still makes release names.
        let name = try run(switchyardBinary, ["version", "--ticket", "OPS-142", "--module", "api"])
        #expect(name.status == 0 && name.output.hasPrefix("OPS-142-api-"), "\(name)")
        // `deploy run --version V` is still that command's option, not the program's version.
        let deploy = try run(switchyardBinary, ["deploy", "run", "/nonexistent/plan.yaml", "--version", "v1"])
        #expect(deploy.status == 2 && !deploy.output.contains("switchyard 0."), "\(deploy)")
    }

    // MARK: The man page and the shell completions

    @Test func generatedManPageAndCompletionsAreUpToDateAndValid() throws {
        let dir = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = packageRoot.path
        let generated = try run("/usr/bin/env", ["SWITCHYARD_BIN=\(switchyardBinary)", "\(root)/scripts/gen-docs", dir])
        #expect(generated.status == 0, "\(generated.error)")
        let files = ["man/man1/switchyard.1", "completions/switchyard.bash", "completions/_switchyard", "completions/switchyard.fish"]
        for file in files {
            let fresh = try String(contentsOfFile: "\(dir)/\(file)", encoding: .utf8)
            let committed = (try? String(contentsOfFile: "\(root)/share/\(file)", encoding: .utf8)) ?? ""
            #expect(!fresh.isEmpty)
            #expect(fresh == committed, "share/\(file) is out of date: run `swift build && scripts/gen-docs` and commit it")
        }
        // Each shell parses its script; bash also registers the completion.
        #expect(try run("/bin/bash", ["-n", "\(dir)/completions/switchyard.bash"]).status == 0)
        let registered = try run("/bin/bash", ["-c", "source '\(dir)/completions/switchyard.bash' && complete -p switchyard"])
        #expect(registered.status == 0 && registered.output.contains("switchyard"), "\(registered)")
        let zsh = try run("/usr/bin/zsh", ["-n", "\(dir)/completions/_switchyard"])
        #expect(zsh.status == 0, "\(zsh.error)")
        let fish = try run("/usr/bin/fish", ["--no-execute", "\(dir)/completions/switchyard.fish"])
        #expect(fish.status == 0, "\(fish.error)")
        for command in ["status", "add-server", "remove-server", "reload", "rules", "metrics"] {
            #expect(try String(contentsOfFile: "\(dir)/completions/switchyard.bash", encoding: .utf8).contains(command), "\(command)")
        }
        // The man page renders without warnings and holds every ctl command and the exit codes.
        let page = "\(dir)/man/man1/switchyard.1"
        let rendered = try run("/usr/bin/groff", ["-man", "-Tutf8", "-ww", page])
        #expect(rendered.status == 0 && rendered.error.isEmpty, "\(rendered.error)")
        let text = try run("/bin/sh", ["-c", "groff -man -Tascii -P-c -P-b -P-u '\(page)'"]).output
        for heading in ["NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS"] {
            #expect(text.contains("\n\(heading)\n"), "no \(heading) section")
        }
        for command in ["switchyard ctl status", "switchyard ctl add-server", "switchyard ctl reload", "switchyard deploy run", "--token-file"] {
            #expect(text.contains(command), "the man page lacks \(command)")
        }
    }
}
