import Foundation
import Glibc

/// What one hook command did.
public struct HookResult: Sendable {
    public var exitCode: Int32
    public var durationMilliseconds: Int
    /// Standard output and error together; the last 64 KiB when longer.
    public var output: String
    public var timedOut: Bool
    /// `shouldStop` ended it (the rollout was interrupted).
    public var interrupted = false
}

/// Runs hook commands with `/bin/sh -c`. Placeholders such as `{version}` are replaced by
/// shell-quoted values, so a value can never become shell syntax; the same values are also
/// in the environment (`SWITCHYARD_VERSION`, `SWITCHYARD_ENV`, ...).
public enum HookRunner {
    public static let knownPlaceholders = ["version", "env", "pool", "service", "preview_url", "server", "address", "previous_version"]
    static let outputLimit = 64 * 1024

    public static func placeholders(in command: String) -> [String] {
        var names: [String] = []
        var rest = command[...]
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            let name = rest[rest.index(after: open)..<close]
            if !name.isEmpty && name.allSatisfy({ $0.isLetter || $0 == "_" }) { names.append(String(name)) }
            rest = rest[rest.index(after: close)...]
        }
        return names
    }

    static func quote(_ value: String) -> String {
        if !value.isEmpty && value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./:@%+=,".contains($0)) }) { return value }
        return "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    public static func expand(_ command: String, values: [String: String]) -> String {
        var out = command
        for (name, value) in values { out = out.replacingOccurrences(of: "{\(name)}", with: quote(value)) }
        return out
    }

    /// Runs one command; kills its whole process group after `timeout`, or as soon as
    /// `shouldStop` (asked every 100 ms) says so.
    public static func run(_ command: String, values: [String: String], timeout: Duration,
                           shouldStop: () -> Bool = { false }) -> HookResult {
        let expanded = expand(command, values: values)
        let start = Date()
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return HookResult(exitCode: 127, durationMilliseconds: 0, output: "cannot create a pipe", timedOut: false) }
        // Close-on-exec: the shell gets the pipe as 1 and 2 only (through dup2), so what it
        // starts in the background and commands other threads spawn do not hold it open.
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        // Own process group (so a timeout kills the whole tree) and default signal handling.
        posix_spawnattr_setpgroup(&attributes, 0)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGINT, SIGTERM, SIGHUP] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var environment = ProcessInfo.processInfo.environment
        for (name, value) in values { environment["SWITCHYARD_" + name.uppercased()] = value }
        let envStrings = environment.map { "\($0.key)=\($0.value)" }
        let argv = ["/bin/sh", "-c", expanded]
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgv in withCStrings(envStrings) { cEnv in posix_spawn(&pid, "/bin/sh", &actions, &attributes, cArgv, cEnv) } }
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attributes)
        close(pipeFDs[1])
        guard rc == 0 else {
            close(pipeFDs[0])
            return HookResult(exitCode: 127, durationMilliseconds: 0, output: "cannot start /bin/sh: \(String(cString: strerror(rc)))", timedOut: false)
        }
        var output = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 16384)
        let deadline = start.addingTimeInterval(Double(timeout.milliseconds) / 1000)
        var timedOut = false
        var interrupted = false
        var status: Int32 = 0
        var reaped = false
        var statusLost = false
        // Stop at EOF, or once the shell has exited: an instance the hook started in the
        // background may hold the pipe open for as long as it runs.
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { timedOut = true; break }
            if shouldStop() { interrupted = true; break }
            var p = pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(min(left * 1000, 100)) + 1)
            if ready < 0 && errno == EINTR { continue }
            if ready > 0 {
                let n = buffer.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
                if n <= 0 { break }
                output.append(contentsOf: buffer[0..<n])
                if output.count > 2 * outputLimit { output.removeFirst(output.count - outputLimit) }
            }
            // Asked even while output flows: a background child may write for as long as it runs.
            let waited = waitpid(pid, &status, WNOHANG)
            if waited < 0 && errno == ECHILD {
                // Reaped by someone else: the exit status is gone.
                reaped = true
                statusLost = true
                break
            }
            if waited == pid {
                reaped = true
                _ = fcntl(pipeFDs[0], F_SETFL, O_NONBLOCK)
                while output.count < 2 * outputLimit {
                    let n = buffer.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    output.append(contentsOf: buffer[0..<n])
                }
                break
            }
        }
        if timedOut || interrupted { kill(-pid, SIGKILL) }
        close(pipeFDs[0])
        if !reaped { while waitpid(pid, &status, 0) < 0 && errno == EINTR {} }
        let exited = (status & 0x7f) == 0
        let code: Int32 = timedOut ? 124 : interrupted ? 130 : statusLost ? 127 : (exited ? (status >> 8) & 0xff : 128 + (status & 0x7f))
        if output.count > outputLimit { output.removeFirst(output.count - outputLimit) }
        var text = String(decoding: output, as: UTF8.self)
        if timedOut { text += "\n[switchyard: killed after \(timeout.milliseconds / 1000)s]" }
        if interrupted { text += "\n[switchyard: stopped: the rollout was interrupted]" }
        if statusLost { text += "\n[switchyard: the shell's exit status was lost (reaped elsewhere); counted as failed]" }
        return HookResult(exitCode: code, durationMilliseconds: Int(Date().timeIntervalSince(start) * 1000), output: text,
                          timedOut: timedOut, interrupted: interrupted)
    }

    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for p in pointers { free(p) } }
        return body(pointers)
    }
}
