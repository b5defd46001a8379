import Foundation
import Glibc
import Testing

/// The web console in a real browser: headless Chromium driven by Selenium from Python
/// (Tests/Browser/console_test.py) against a real console with real proxies and rollouts.
/// The screenshots the script takes are kept in the test's folder, printed at the end.
@Suite(.serialized) struct ConsoleBrowserTests {
    static let webDirectory = packageRoot.appendingPathComponent("Sources/SwitchyardConsole/Web").path
    static let script = packageRoot.appendingPathComponent("Tests/Browser/console_test.py").path

    /// stage (canary with a guard) then prod (canary, manual approval), short steps.
    static func plan(_ lab: DeployLab) -> String {
        """
        service: web
        environments:
          - { name: stage, admin: "\(lab.admin("stage"))", strategy: canary, steps: [ {weight: 10%}, {pause: 2s}, {weight: 50%}, {pause: 2s} ],
              guard: { max_error_rate: 50%, min_requests: 10, window: 5s } }
          - { name: prod, admin: "\(lab.admin("prod"))", strategy: canary, approval: manual, steps: [ {weight: 20%}, {pause: 2s} ] }
        analysis:
          interval: 1s
          min_requests: 5
          max_error_rate: 5%
          max_p99: 250ms
          failure_limit: 1
        hooks:
          start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
        history: \(lab.directory)/history.sqlite
        """
    }

    /// What the browser tests need on this machine, or what to install.
    static func missingTools() -> [String] {
        var missing: [String] = []
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver", "/usr/bin/python3"] where !FileManager.default.isExecutableFile(atPath: tool) {
            missing.append(tool)
        }
        if missing.isEmpty, (try? run("/usr/bin/python3", ["-c", "import selenium"]))?.status != 0 { missing.append("python3-selenium") }
        return missing
    }

    @Test func everyFileOfTheWebFolderIsEmbedded() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir)
        defer { console.stop() }
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.webDirectory).filter { !$0.hasPrefix(".") }
        #expect(files.contains("index.html") && files.contains("app.js"))
        for file in files {
            let expected = try String(contentsOfFile: "\(Self.webDirectory)/\(file)", encoding: .utf8)
            let served = try curl(["-s", "-D", "\(dir)/headers", console.url + (file == "index.html" ? "/" : "/ui/\(file)")])
            #expect(served.output == expected, "\(file) is not served as it is in the Web folder; list it in WebAssets.files")
            let headers = (try? String(contentsOfFile: "\(dir)/headers", encoding: .utf8)) ?? ""
            #expect(headers.contains("default-src 'self'"), "\(file) is served without the Content-Security-Policy")
        }
        for path in ["/ui/../Package.swift", "/ui/..%2FPackage.swift", "/ui/.hidden", "/ui/missing.js"] {
            #expect(try curl(["-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", console.url + path]).output == "404", "\(path)")
        }
    }

    @Test func theWebConsoleWorksInARealBrowser() throws {
        let missing = Self.missingTools()
        try #require(missing.isEmpty, "the browser tests need \(missing.joined(separator: ", ")); run scripts/deps")

        let lab = try DeployLab()
        // The proxies, their instances and the load live until the end of the test.
        defer { withExtendedLifetime(lab) {} }
        let stage = try lab.environment("stage", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let prod = try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        // A trickle of traffic (about a hundred requests a second on each proxy) for the analysis and the charts.
        try "function delay()\n  return 10\nend\n".write(toFile: "\(lab.directory)/trickle.lua", atomically: true, encoding: .utf8)
        for (name, proxy) in [("stage", stage), ("prod", prod)] {
            let out = "\(lab.directory)/wrk-\(name).out"
            lab.loads.append(try spawn("/usr/bin/wrk", ["-t1", "-c1", "-d600s", "-s", "\(lab.directory)/trickle.lua", proxy.url + "/"],
                                       stdout: out, stderr: out + ".err"))
        }
        let planPath = try lab.writePlan(Self.plan(lab))
        let directory = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: directory, plans: [planPath], config: "anonymous_viewer: true\npoll_interval: 1s\n")
        defer { console.stop() }
        let loginConsole = try ConsoleProcess(directory: directory, database: "sqlite:\(directory)/login-console.sqlite", label: "login-console")
        defer { loginConsole.stop() }

        let screenshots = "\(directory)/screenshots"
        let started = Date()
        let result = try run("/usr/bin/python3", ["-B", Self.script, "--console", console.url, "--login-console", loginConsole.url,
                                                  "--token", consoleAdminToken, "--out", screenshots])
        let seconds = Date().timeIntervalSince(started)
        #expect(result.status == 0, "the browser tests failed (screenshots in \(screenshots)):\n\(result.output)\n\(result.error)")
        if result.status == 0 { print("browser tests passed in \(String(format: "%.0f", seconds))s; screenshots in \(screenshots)\n\(result.output)") }
        // The consoles never print a token.
        #expect(!console.process.stdout.contains(consoleAdminToken) && !console.process.stderr.contains(consoleAdminToken))
    }
}
