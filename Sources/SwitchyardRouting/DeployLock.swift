import Foundation

/// The deploy lock: while held, changes need its token. Kept in the state file.
public struct LockInfo: Codable, Equatable, Sendable {
    public var owner: String
    public var reason: String
    public var token: String
    public var since: Date
    public var expires: Date

    public init(owner: String, reason: String, token: String, since: Date, expires: Date) {
        self.owner = owner
        self.reason = reason
        self.token = token
        self.since = since
        self.expires = expires
    }
}

/// The lock's rules, apart from where the lock is kept. Pure, so they are tested without a proxy.
public enum LockRules {
    /// The lock in force at `now`: nil when there is none or it has expired.
    public static func current(_ lock: LockInfo?, at now: Date) -> LockInfo? {
        guard let lock, lock.expires > now else { return nil }
        return lock
    }

    /// Whether a change carrying `token` may go ahead.
    public static func admits(_ lock: LockInfo?, token: String?, at now: Date) -> Bool {
        guard let held = current(lock, at: now) else { return true }
        return token == held.token
    }

    /// Why a lock cannot be taken.
    public enum Refusal: Error, Equatable, Sendable { case heldByAnother(LockInfo) }

    /// Takes the lock, or renews it for the holder of its token. `newToken` is used for a new
    /// lock; a renewal keeps the token and the time it was first taken.
    public static func take(_ lock: LockInfo?, owner: String, reason: String, ttlMilliseconds: Int64, token existing: String?,
                            newToken: String, at now: Date) -> Result<LockInfo, Refusal> {
        let held = current(lock, at: now)
        if let held, held.token != existing { return .failure(.heldByAnother(held)) }
        return .success(LockInfo(owner: owner, reason: reason, token: existing ?? newToken, since: held?.since ?? now,
                                 expires: now.addingTimeInterval(Double(ttlMilliseconds) / 1000)))
    }
}
