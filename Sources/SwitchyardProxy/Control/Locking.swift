import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// The deploy locks: one proxy-wide (maintenance) or one per service (rules in `LockRules`).
extension ControlPlane {
    // MARK: Locks

    /// The locks in force now. Expired ones are dropped (and the state file rewritten).
    func currentLocks() -> LockSet {
        let live = LockRules.live(locks, at: Date())
        if live != locks {
            locks = live
            // An expired lock is gone whether or not this write succeeds; a failure is only reported.
            do throws(AdminError) { try persist() } catch { logToStandardError("switchyard: \(error.detail)") }
        }
        return locks
    }

    /// A reload is a mutation of the whole proxy: refused while anyone else holds a lock.
    func checkLockFor(_ token: String?) throws(AdminError) { try checkLock(token, scope: .proxy) }

    /// Refuses (423) a change with `scope` unless every lock covering it was taken with `token`.
    /// `pool` names the pool a server or version change is about, for the message.
    func checkLock(_ token: String?, scope: LockScope, pool: String? = nil) throws(AdminError) {
        guard let lock = LockRules.blocking(currentLocks(), scope: scope, token: token, at: Date()) else { return }
        var why = ""
        if let service = lock.service {
            why = " (the lock of service \(service)"
            if let pool, case .services(let names) = scope {
                why += "; pool \(pool) takes traffic of service\(names.count > 1 ? "s" : "") \(names.sorted().joined(separator: ", "))"
            }
            why += ")"
        }
        throw AdminError(423, "locked",
                         "locked by \(lock.owner)\(why) since \(Self.time(lock.since)) (reason: \(lock.reason)); send the lock token in X-Switchyard-Lock, or wait until \(Self.time(lock.expires))")
    }

    /// Takes the lock of `service` (nil: the proxy-wide lock), or renews it with its token.
    public func acquireLock(owner: String, reason: String, ttl: Duration, service: String?, actor: Actor,
                            token existing: String?) throws(AdminError) -> LockInfo {
        if let service { _ = try self.service(service) }
        var bytes = [UInt8](repeating: 0, count: 16)
        _ = bytes.withUnsafeMutableBytes { getentropy($0.baseAddress, 16) }
        let held = currentLocks()
        let renewal = existing != nil && held.lock(service: service)?.token == existing
        let next: LockSet
        switch LockRules.take(held, service: service, owner: owner, reason: reason, ttlMilliseconds: ttl.milliseconds,
                              token: existing, newToken: bytes.map { String(format: "%02x", $0) }.joined(), at: Date()) {
        case .success(let taken): next = taken
        case .failure(.heldByAnother(let held)):
            throw AdminError(423, "locked", "\(Self.scopeName(held.service)) is already locked by \(Self.holder(held))")
        case .failure(.blockedBy(let holders)):
            let detail = service == nil
                ? "the proxy-wide lock cannot be taken while services are locked: \(holders.map { "service \($0.service ?? "") by \(Self.holder($0))" }.joined(separator: "; ")); wait for them to be released or to expire, or break them (DELETE /v1/lock?service=NAME&force=true)"
                : "service \(service ?? "") cannot be locked while the proxy-wide lock is held by \(holders.map(Self.holder).joined(separator: "; ")); wait for it to be released or to expire"
            throw AdminError(423, "locked", detail)
        case .failure(.tokenOfAnotherLock(let other)):
            throw AdminError(409, "token of another lock",
                             "the token sent in X-Switchyard-Lock belongs to \(Self.lockName(other.service)); a token renews its own lock only: send no token to take a new lock\(other.service.map { ", or give \"service\": \"\($0)\" to renew yours" } ?? ", or leave out \"service\" to renew yours")")
        }
        guard let info = next.lock(service: service) else {
            throw AdminError(500, "lock not taken", "the lock table has no lock for \(Self.scopeName(service)) after taking it; retry")
        }
        let saved = savedState()
        locks = next
        var after: [String: Any] = ["owner": owner, "reason": reason, "expires": Self.time(info.expires)]
        if let service { after["service"] = service }
        try makeDurable(actor: actor, action: renewal ? "renew lock" : "lock", target: Self.lockTarget(service), before: nil,
                        after: after, restoring: saved)
        return info
    }

    /// Releases a lock: the one whose token is sent, or with `force` the lock of `service`
    /// (nil: the proxy-wide lock), whoever holds it (recorded as "break lock").
    /// A lock of a service that a reload removed can still be released by name.
    public func releaseLock(token: String?, service: String?, force: Bool, actor: Actor) throws(AdminError) {
        let release: LockRules.Release
        switch LockRules.release(currentLocks(), service: service, token: token, force: force, at: Date()) {
        case .success(let done): release = done
        case .failure(.notLocked(let scope, let held)):
            guard !held.isEmpty else { throw AdminError(409, "not locked", "there is no lock to release") }
            let list = held.map { "\(Self.lockName($0.service)) by \($0.owner)" }.joined(separator: ", ")
            throw AdminError(409, "not locked", scope.map { "service \($0) is not locked (held: \(list))" }
                                 ?? "there is no proxy-wide lock (held: \(list)); name a service's lock with service=NAME")
        case .failure(.heldByAnother(let held)):
            throw AdminError(423, "locked", "\(Self.scopeName(held.service)) is locked by \(held.owner); send its token in X-Switchyard-Lock, or force=true to break it")
        }
        let saved = savedState()
        locks = release.locks
        let held = release.released
        var before: [String: Any] = ["owner": held.owner, "reason": held.reason]
        if let service = held.service { before["service"] = service }
        try makeDurable(actor: actor, action: release.broken ? "break lock" : "unlock", target: Self.lockTarget(held.service),
                        before: before, after: nil, restoring: saved)
    }

    /// Every lock in force, proxy-wide first.
    public var activeLocks: [LockInfo] { currentLocks().locks }

    /// What a lock covers, for messages: "the proxy" or "service web".
    static func scopeName(_ service: String?) -> String { service.map { "service \($0)" } ?? "the proxy" }

    /// A lock, for messages: "the proxy-wide lock" or "the lock of service web".
    static func lockName(_ service: String?) -> String { service.map { "the lock of service \($0)" } ?? "the proxy-wide lock" }

    /// The audit trail's target for a lock: "lock" (proxy-wide) or "lock service web".
    static func lockTarget(_ service: String?) -> String { service.map { "lock service \($0)" } ?? "lock" }

    /// Who holds a lock and why, for messages.
    static func holder(_ lock: LockInfo) -> String {
        "\(lock.owner) since \(time(lock.since)) until \(time(lock.expires)) (reason: \(lock.reason))"
    }

    static func time(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }
}
