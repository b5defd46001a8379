import Foundation
import Glibc
import Testing

/// The package root, found from this file's path (Tests/IntegrationTests/Fixtures/).
let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `switchyard` binary under test: `SWITCHYARD_BIN`, or the debug build.
let switchyardBinary: String = {
    if let path = ProcessInfo.processInfo.environment["SWITCHYARD_BIN"] { return path }
    return packageRoot.appendingPathComponent(".build/debug/switchyard").path
}()

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A scratch directory for one test, removed when the test's processes stop.
func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/switchyard-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    return path
}

/// A child process started by a test and stopped by PID when the test ends. Spawned and
/// reaped directly (posix_spawn, waitpid) so its exit is seen at once.
final class ManagedProcess: @unchecked Sendable {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private var exitStatus: Int32? = nil

    /// - Parameter launcher: a command that execs the binary in its own process, e.g.
    ///   `["/usr/bin/prlimit", "--nofile=64:64"]` (the PID is then the binary's).
    init(_ arguments: [String], directory: String, label: String, launcher: [String] = []) throws {
        guard FileManager.default.isExecutableFile(atPath: switchyardBinary) else {
            throw HarnessError("\(switchyardBinary) does not exist; build it first (`swift build`, or use scripts/test)")
        }
        stdoutPath = "\(directory)/\(label).out"
        stderrPath = "\(directory)/\(label).err"
        if let command = launcher.first {
            pid = try spawn(command, Array(launcher.dropFirst()) + [switchyardBinary] + arguments, stdout: stdoutPath, stderr: stderrPath)
        } else {
            pid = try spawn(switchyardBinary, arguments, stdout: stdoutPath, stderr: stderrPath)
        }
    }

    /// Starts another program than the binary under test (a database server, say), with the
    /// same output files and reaping.
    init(executable: String, _ arguments: [String], directory: String, label: String) throws {
        stdoutPath = "\(directory)/\(label).out"
        stderrPath = "\(directory)/\(label).err"
        pid = try spawn(executable, arguments, stdout: stdoutPath, stderr: stderrPath)
    }

    var isRunning: Bool { reap(blocking: false) == nil }
    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) { if exitStatus == nil { kill(pid, number) } }

    /// The exit status once the process has exited (nil while it runs).
    private func reap(blocking: Bool) -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let r = waitpid(pid, &status, blocking ? 0 : WNOHANG)
        guard r == pid else { return nil }
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exitStatus = code
        return code
    }

    /// Waits for exit; returns the exit status, or nil on timeout.
    func waitForExit(timeout: Double) -> Int32? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let code = reap(blocking: false) { return code }
            usleep(5_000)
        }
        return nil
    }

    func stop() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if waitForExit(timeout: 5) == nil {
            kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
    }

    deinit { stop() }
}

/// Starts `path` with `arguments`, standard output and error going to files.
func spawn(_ path: String, _ arguments: [String], stdout: String, stderr: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    // Nothing else of the test runner's: tests running beside this one hold sockets open, and
    // a child that inherited them would count them against its open-file limit (the limit
    // tests run the proxy with 64).
    // (glibc 2.34 and later; Swift's Glibc module does not declare it, so it is looked up.)
    if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
    }
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    // The test runner blocks some signals in its threads; children must not inherit that.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigmask(&attributes, &none)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
    guard rc == 0 else { throw HarnessError("cannot start \(path): \(String(cString: strerror(rc)))") }
    return pid
}

/// Waits until `path` exists and returns its contents.
/// - Parameter process: the process that writes it: waiting stops as soon as it has exited,
///   so a process that cannot start fails at once and one that starts slowly (several tests
///   start fleets at once on a small machine) gets the whole timeout.
func waitForFile(_ path: String, timeout: Double = 15, writtenBy process: ManagedProcess? = nil) throws -> String {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty { return text }
        if let process, !process.isRunning {
            if let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty { return text }
            throw HarnessError("\(path) was not written: its process exited")
        }
        usleep(10_000)
    }
    throw HarnessError("timed out waiting for \(path)")
}

/// A demo app upstream on a free port.
final class Upstream {
    let process: ManagedProcess
    let port: UInt16
    let name: String
    let requestLogPath: String

    init(name: String, directory: String, extraArguments: [String] = [], port fixedPort: UInt16 = 0) throws {
        self.name = name
        let ready = "\(directory)/\(name).port"
        unlink(ready)
        requestLogPath = "\(directory)/\(name).requests"
        process = try ManagedProcess(["demo-app", "--name", name, "--listen", "127.0.0.1:\(fixedPort)", "--ready-file", ready,
                                      "--request-log", requestLogPath] + extraArguments, directory: directory, label: "app-\(name)")
        guard let port = UInt16(try waitForFile(ready, timeout: 60, writtenBy: process).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("demo app \(name) wrote no port")
        }
        self.port = port
    }

    var address: String { "127.0.0.1:\(port)" }
    var requestsSeen: [String] {
        ((try? String(contentsOfFile: requestLogPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func stop() { process.stop() }
}

/// A running `switchyard run` on a free port with the given configuration body
/// (everything but `listeners`, which the harness adds).
final class Proxy {
    let process: ManagedProcess
    let port: UInt16
    let directory: String
    let configPath: String

    init(directory: String, config: String, workers: Int = 2, launcher: [String] = []) throws {
        self.directory = directory
        configPath = "\(directory)/switchyard.yaml"
        let text = "workers: \(workers)\nlisteners:\n  - bind: 127.0.0.1:0\n" + config
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        let ready = "\(directory)/switchyard.ready"
        unlink(ready) // a restart must not read the previous process's file
        process = try ManagedProcess(["run", "--config", configPath, "--ready-file", ready], directory: directory, label: "switchyard",
                                     launcher: launcher)
        let line: String
        do { line = try waitForFile(ready, timeout: 60, writtenBy: process) } catch {
            throw HarnessError("switchyard did not start: \(process.stderr)")
        }
        guard let portText = line.split(separator: "\n").first?.split(separator: ":").last, let port = UInt16(portText) else {
            throw HarnessError("bad ready file: \(line)")
        }
        self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// Resident memory of the proxy process in KiB.
    var rssKiB: Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
        }
        return 0
    }

    func stop() { process.stop() }
}

/// A test scenario: upstreams plus a proxy, all stopped by PID at the end.
final class Scenario {
    let directory = makeTemporaryDirectory()
    var upstreams: [Upstream] = []
    var proxy: Proxy!

    func upstream(_ name: String, _ extraArguments: [String] = [], port: UInt16 = 0) throws -> Upstream {
        let u = try Upstream(name: name, directory: directory, extraArguments: extraArguments, port: port)
        upstreams.append(u)
        return u
    }

    func startProxy(_ config: String, workers: Int = 2, launcher: [String] = []) throws -> Proxy {
        proxy = try Proxy(directory: directory, config: config, workers: workers, launcher: launcher)
        return proxy
    }

    deinit {
        proxy?.stop()
        for u in upstreams { u.stop() }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A pool/service configuration fragment sending everything to `servers`.
func simpleConfig(_ servers: [(String, Int)], balance: String = "round_robin", extra: String = "") -> String {
    var text = "pools:\n  app:\n    balance: \(balance)\n    servers:\n"
    for (address, weight) in servers { text += "      - { address: \(address), weight: \(weight) }\n" }
    text += "services:\n  web:\n    active: app\naccess_log: off\n" + extra
    return text
}

/// Runs a command to completion and returns its exit status, standard output and error.
@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let dir = makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let pid = try spawn(executable, arguments, stdout: "\(dir)/out", stderr: "\(dir)/err")
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let out = (try? String(contentsOfFile: "\(dir)/out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: "\(dir)/err", encoding: .utf8)) ?? ""
    return (code, out, err)
}

func curl(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    try run("/usr/bin/curl", ["-sS", "--max-time", "30"] + arguments)
}

/// A listening socket on 127.0.0.1 and a free port chosen by the kernel.
func loopbackListener() -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    listen(fd, 128)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return (fd, UInt16(bigEndian: addr.sin_port))
}

/// A TCP port that was free a moment ago (for listeners that cannot take port 0).
///
/// Taken below the kernel's ephemeral range (32768 and up), and never twice in one run: a
/// test often reserves a port and starts its listener seconds later, and a port from the
/// ephemeral range can meanwhile become the local port of some outgoing connection (the
/// proxies' health checks and wrk open thousands), so the listener would fail to bind.
func freePort() -> UInt16 {
    for _ in 0..<PortAllocator.rangeSize {
        let candidate = PortAllocator.next()
        if portIsFree(candidate) { return candidate }
    }
    let (fd, port) = loopbackListener()
    close(fd)
    return port
}

private enum PortAllocator {
    static let lowest = 20_000
    static let rangeSize = 12_000
    private static let lock = NSLock()
    // Starts at a place that depends on the process so two runs at once rarely meet.
    nonisolated(unsafe) private static var offset = Int(getpid()) % rangeSize

    static func next() -> UInt16 {
        lock.lock()
        defer { lock.unlock() }
        offset = (offset + 1) % rangeSize
        return UInt16(lowest + offset)
    }
}

private func portIsFree(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    return bound == 0
}

/// Writes a script that hooks run directly. Its descriptor is close-on-exec: a process that
/// another test forks meanwhile would otherwise inherit it open for writing, and running the
/// script then fails with "Text file busy" for as long as that process lives.
func writeExecutable(_ text: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
    guard fd >= 0 else { throw HarnessError("cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw HarnessError("cannot write \(path): \(String(cString: strerror(errno)))") }
        written += n
    }
    fchmod(fd, 0o755)
}
