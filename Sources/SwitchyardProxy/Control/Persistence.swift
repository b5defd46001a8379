import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Making changes durable: the state file and the audit trail.
extension ControlPlane {
    /// Writes the state file atomically (see `StateStore`).
    func persist() throws(AdminError) {
        try stateStore.save(StateStore.Persisted(state: state, lock: locks.proxyWide, serviceLocks: locks.serviceLocks,
                                                 history: history, fileState: fileState))
    }

    /// Appends one entry to the audit trail.
    func record(actor: Actor, action: String, target: String, before: Any?, after: Any?) throws(AdminError) {
        var entry: [String: Any] = [
            "time": ISO8601DateFormatter.withFraction.string(from: Date()),
            "actor": actor.user,
            "action": action,
            "target": target,
            "generation": state.generation,
        ]
        if let label = actor.label { entry["actor_label"] = label }
        entry["before"] = before ?? NSNull()
        entry["after"] = after ?? NSNull()
        try auditLog.append(entry, action: action)
    }
}

/// The state file: runtime state, locks and rollback history, written so that a crash leaves
/// either the old file or the new one.
struct StateStore {
    struct Persisted: Codable {
        var state: RuntimeState
        /// The proxy-wide lock. (Older state files hold their one lock here: it stays proxy-wide.)
        var lock: LockInfo?
        /// The service locks (absent in older state files).
        var serviceLocks: [LockInfo]?
        var history: [String: [RuntimeState.Service]]
        /// The file's state when `state` was written (absent in older state files).
        var fileState: RuntimeState?
    }

    let path: String?
    /// The JSON of each pool's servers, kept while they stay the same.
    let encoded = EncodedParts()

    /// One per state file: the file's state and the current one are kept apart, since they
    /// differ exactly where an operator changed something.
    final class EncodedParts {
        let state = RuntimeStateJSON.Kept()
        let fileState = RuntimeStateJSON.Kept()
    }

    /// What the file holds; nil when there is no state file yet.
    func load() throws -> Persisted? {
        guard let path, FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder.switchyard.decode(Persisted.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ProxyError("cannot read state file \(path): \(error); fix or move it away (runtime changes it holds would be lost)")
        }
    }

    /// Temporary file, fsync, rename, fsync of the directory.
    func save(_ persisted: Persisted) throws(AdminError) {
        guard let path else { return }
        do {
            try writeAtomically(Data(try Self.encode(persisted, parts: encoded)), to: path)
        } catch {
            throw AdminError(500, "state not saved",
                             "cannot write the state file \(path) (\(error)); the change was not applied. Check the disk space and the permissions of its directory, then retry")
        }
    }
}

extension StateStore {
    /// The file's JSON: what `JSONEncoder` writes for `Persisted` (sorted keys, compact), with
    /// both runtime states written by `RuntimeStateJSON`, which is many times faster where a
    /// state has thousands of servers. `JSONDecoder` reads it back as `Persisted`.
    static func encode(_ persisted: Persisted, parts: EncodedParts = EncodedParts()) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        out.append(UInt8(ascii: "{"))
        if let fileState = persisted.fileState {
            out.append(contentsOf: #""fileState":"#.utf8)
            try RuntimeStateJSON.append(fileState, to: &out, encoder: encoder, kept: parts.fileState)
            out.append(UInt8(ascii: ","))
        }
        out.append(contentsOf: #""history":"#.utf8)
        out.append(contentsOf: try encoder.encode(persisted.history))
        if let lock = persisted.lock {
            out.append(contentsOf: #","lock":"#.utf8)
            out.append(contentsOf: try encoder.encode(lock))
        }
        if let serviceLocks = persisted.serviceLocks {
            out.append(contentsOf: #","serviceLocks":"#.utf8)
            out.append(contentsOf: try encoder.encode(serviceLocks))
        }
        out.append(contentsOf: #","state":"#.utf8)
        try RuntimeStateJSON.append(persisted.state, to: &out, encoder: encoder, kept: parts.state)
        out.append(contentsOf: "}\n".utf8)
        return out
    }
}

/// The audit trail: every change, appended and fsynced to `STATE_FILE.audit.jsonl` (one JSON
/// object per line), the most recent kept in memory for `GET /v1/audit` and reloaded at start.
final class AuditLog {
    static let memoryLimit = 1000
    let path: String?
    private(set) var entries: [[String: Any]] = []

    init(path: String?) {
        self.path = path
        if let path, let text = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in text.split(separator: "\n").suffix(Self.memoryLimit) {
                if let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { entries.append(entry) }
            }
        }
    }

    /// Appends `entry` to the file (when there is one), then to memory; refuses with a 500
    /// naming the file when the write fails.
    func append(_ entry: [String: Any], action: String) throws(AdminError) {
        if let path {
            guard let line = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) else {
                throw AdminError(500, "audit not written", "the audit entry for \(action) could not be encoded; the change was not applied")
            }
            var bytes = [UInt8](line)
            bytes.append(10)
            if let reason = Self.append(bytes, to: path) {
                throw AdminError(500, "audit not written",
                                 "cannot append to the audit trail \(path) (\(reason)); the change was not applied. Check the disk space and the permissions of its directory, then retry")
            }
        }
        entries.append(entry)
        if entries.count > Self.memoryLimit { entries.removeFirst() }
    }

    /// Appends `bytes` and fsyncs; the reason when that fails.
    private static func append(_ bytes: [UInt8], to path: String) -> String? {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return "open: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { return "write: \(written < 0 ? String(cString: strerror(errno)) : "short write")" }
        guard fsync(fd) == 0 else { return "fsync: \(String(cString: strerror(errno)))" }
        return nil
    }
}

/// Writes `data` to `path` so that a crash leaves either the old file or the new one.
func writeAtomically(_ data: Data, to path: String) throws {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw ProxyError("open \(temporary): \(String(cString: strerror(errno)))") }
    let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == data.count, fsync(fd) == 0 else {
        let reason = String(cString: strerror(errno))
        close(fd)
        throw ProxyError("write \(temporary): \(reason)")
    }
    close(fd)
    guard rename(temporary, path) == 0 else { throw ProxyError("rename to \(path): \(String(cString: strerror(errno)))") }
    let directory = (path as NSString).deletingLastPathComponent
    let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}

extension JSONDecoder {
    static var switchyard: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let withFraction: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}

