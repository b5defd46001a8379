import Foundation
import Glibc

/// A tiny DNS server for tests (Fixtures/dns_server.py) on 127.0.0.1: it answers from a file
/// the test rewrites, so a name's answer can change, fail or stop while the proxy runs.
final class DNSServer {
    let directory: String
    let answersPath: String
    private(set) var port: UInt16 = 0
    private var pid: pid_t = 0

    static let script = packageRoot.appendingPathComponent("Tests/IntegrationTests/Fixtures/dns_server.py").path

    /// Starts it answering `names` (name to addresses).
    init(directory: String, names: [String: [String]]) throws {
        self.directory = directory
        answersPath = "\(directory)/dns-answers.json"
        try answer(names)
        let portFile = "\(directory)/dns.port"
        unlink(portFile)
        pid = try spawn("/usr/bin/env", ["python3", Self.script, answersPath, portFile],
                        stdout: "\(directory)/dns.out", stderr: "\(directory)/dns.err")
        guard let bound = UInt16(try waitForFile(portFile).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("the DNS server wrote no port: \((try? String(contentsOfFile: "\(directory)/dns.err", encoding: .utf8)) ?? "")")
        }
        port = bound
    }

    var address: String { "127.0.0.1:\(port)" }

    /// Answers `names` from now on (names not listed: NXDOMAIN).
    func answer(_ names: [String: [String]]) throws { try write(["mode": "answer", "names": names]) }

    /// Stops answering at all (`drop`), or answers every question with SERVFAIL or REFUSED.
    func fail(_ mode: String) throws { try write(["mode": mode, "names": [String: [String]]()]) }

    /// Every question asked so far, one line each: transport, name, type, what was answered.
    var questions: [String] {
        ((try? String(contentsOfFile: answersPath + ".log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    private func write(_ document: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: document)
        let temporary = answersPath + ".tmp"
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, answersPath) == 0 else { throw HarnessError("cannot write \(answersPath)") }
    }

    func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
    }

    deinit { stop() }
}

/// A demo app listening on a given loopback address (127.0.0.2, 127.0.0.3...: every
/// 127.x address is the loopback interface on Linux), so that several instances share one
/// port, as the addresses of one DNS name do.
final class AddressedUpstream {
    let process: ManagedProcess
    let host: String
    let port: UInt16
    let name: String

    init(name: String, host: String, port: UInt16, directory: String, extraArguments: [String] = []) throws {
        self.name = name
        self.host = host
        let ready = "\(directory)/\(name).port"
        unlink(ready)
        process = try ManagedProcess(["demo-app", "--name", name, "--listen", "\(host):\(port)", "--ready-file", ready] + extraArguments,
                                     directory: directory, label: "app-\(name)")
        guard let bound = UInt16(try waitForFile(ready).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("demo app \(name) wrote no port: \(process.stderr)")
        }
        self.port = bound
    }

    var address: String { "\(host):\(port)" }
}
