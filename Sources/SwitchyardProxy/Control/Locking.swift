import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// The deploy lock (rules in `LockRules`).
extension ControlPlane {
    // MARK: Lock

    func currentLock() -> LockInfo? {
        if lock != nil && LockRules.current(lock, at: Date()) == nil {
            self.lock = nil
            // An expired lock is gone whether or not this write succeeds; a failure is only reported.
            do throws(AdminError) { try persist() } catch { logToStandardError("switchyard: \(error.detail)") }
        }
        return lock
    }

    /// A reload is a mutation too: refused while someone else holds the lock.
    func checkLockFor(_ token: String?) throws(AdminError) { try checkLock(token) }

    func checkLock(_ token: String?) throws(AdminError) {
        guard let lock = currentLock(), !LockRules.admits(lock, token: token, at: Date()) else { return }
        throw AdminError(423, "locked",
                         "locked by \(lock.owner) since \(ISO8601DateFormatter().string(from: lock.since)) (reason: \(lock.reason)); send the lock token in X-Switchyard-Lock, or wait until \(ISO8601DateFormatter().string(from: lock.expires))")
    }

    public func acquireLock(owner: String, reason: String, ttl: Duration, actor: Actor, token existing: String?) throws(AdminError) -> LockInfo {
        var bytes = [UInt8](repeating: 0, count: 16)
        _ = bytes.withUnsafeMutableBytes { getentropy($0.baseAddress, 16) }
        let info: LockInfo
        switch LockRules.take(currentLock(), owner: owner, reason: reason, ttlMilliseconds: ttl.milliseconds, token: existing,
                              newToken: bytes.map { String(format: "%02x", $0) }.joined(), at: Date()) {
        case .success(let taken): info = taken
        case .failure(.heldByAnother(let held)):
            throw AdminError(423, "locked", "already locked by \(held.owner) since \(ISO8601DateFormatter().string(from: held.since)) (reason: \(held.reason))")
        }
        let saved = savedState()
        lock = info
        try makeDurable(actor: actor, action: existing == nil ? "lock" : "renew lock", target: "lock", before: nil,
                        after: ["owner": owner, "reason": reason, "expires": ISO8601DateFormatter().string(from: info.expires)],
                        restoring: saved)
        return info
    }

    public func releaseLock(token: String?, force: Bool, actor: Actor) throws(AdminError) {
        guard let held = currentLock() else { throw AdminError(409, "not locked", "there is no lock to release") }
        if !force && token != held.token {
            throw AdminError(423, "locked", "the lock belongs to \(held.owner); send its token in X-Switchyard-Lock, or force=true to break it")
        }
        let saved = savedState()
        lock = nil
        try makeDurable(actor: actor, action: force && token != held.token ? "break lock" : "unlock", target: "lock",
                        before: ["owner": held.owner, "reason": held.reason], after: nil, restoring: saved)
    }

    public var activeLock: LockInfo? { currentLock() }
}
