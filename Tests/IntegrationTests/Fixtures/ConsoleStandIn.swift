import Foundation
import Glibc

/// A STAND-IN for `switchyard console` (Fixtures/console_standin.py, a Python `http.server`):
/// it takes the runner's reports and answers the CLI's few console calls, so that reporting,
/// retries, uploads and controls are tested against a real HTTP server until the real console
/// is merged; then these tests should run against that instead. Its state is a JSON file,
/// kept across a restart on the same port, as the console's database would be.
final class ConsoleStandIn {
    let directory: String
    let token: String?
    private(set) var port: UInt16 = 0
    private var pid: pid_t = 0

    static let script = packageRoot.appendingPathComponent("Tests/IntegrationTests/Fixtures/console_standin.py").path

    /// https with this certificate and key, when given.
    let tls: (cert: String, key: String)?

    /// Starts it on `port` (0: a free one) in `directory`, requiring `token` when given.
    init(directory: String, port: UInt16 = 0, token: String? = nil, tls: (cert: String, key: String)? = nil) throws {
        self.directory = directory
        self.token = token
        self.tls = tls
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try start(port: port)
    }

    func start(port: UInt16) throws {
        unlink("\(directory)/port")
        var arguments = ["python3", Self.script, directory, "--port", String(port)]
        if let token { arguments += ["--token", token] }
        if let tls { arguments += ["--cert", tls.cert, "--key", tls.key] }
        pid = try spawn("/usr/bin/env", arguments, stdout: "\(directory)/standin.out", stderr: "\(directory)/standin.err")
        guard let bound = UInt16(try waitForFile("\(directory)/port").trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("the console stand-in wrote no port: \((try? String(contentsOfFile: "\(directory)/standin.err", encoding: .utf8)) ?? "")")
        }
        self.port = bound
    }

    var url: String { "\(tls == nil ? "http" : "https")://127.0.0.1:\(port)" }

    /// While down, reports are answered with 503.
    func setDown(_ down: Bool) {
        if down { FileManager.default.createFile(atPath: "\(directory)/down", contents: Data()) } else { unlink("\(directory)/down") }
    }

    func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
    }

    /// Everything it stored (see the script for the layout).
    var state: [String: Any] {
        guard let data = FileManager.default.contents(atPath: "\(directory)/state.json") else { return [:] }
        return ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:]
    }

    /// What it stored of one run.
    func run(_ run: String) -> [String: Any]? { (state["runs"] as? [String: Any])?[run] as? [String: Any] }

    /// The local ids it stored of one kind (steps, hooks, events) of a run, in order.
    func ids(_ kind: String, of run: String) -> [Int] {
        ((self.run(run)?[kind] as? [String: Any])?.keys.compactMap { Int($0) } ?? []).sorted()
    }

    deinit { stop() }
}
