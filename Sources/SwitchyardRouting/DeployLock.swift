import Foundation

/// A deploy lock: while it is held, the changes it covers need its token. Kept in the state file.
///
/// A lock covers either one service (`service` set) or the whole proxy (`service` nil: the
/// maintenance lock, which covers every change). State files written before service locks
/// existed hold locks without `service`, which therefore stay proxy-wide.
public struct LockInfo: Codable, Equatable, Sendable {
    public var owner: String
    public var reason: String
    public var token: String
    public var since: Date
    public var expires: Date
    /// The service this lock covers; nil for the proxy-wide lock.
    public var service: String?

    public init(owner: String, reason: String, token: String, since: Date, expires: Date, service: String? = nil) {
        self.owner = owner
        self.reason = reason
        self.token = token
        self.since = since
        self.expires = expires
        self.service = service
    }

    /// Whether this lock covers a change with `scope`.
    public func covers(_ scope: LockScope) -> Bool {
        guard let service else { return true } // proxy-wide: everything
        switch scope {
        case .proxy: return true
        case .services(let names): return names.contains(service)
        }
    }
}

/// What a change touches, as far as locks are concerned.
public enum LockScope: Equatable, Sendable {
    /// The whole proxy: a reload. Every lock covers it.
    case proxy
    /// The routing of these services, or a pool that exactly these services route to. The
    /// proxy-wide lock and the locks of these services cover it; an empty set (a pool no
    /// service routes to) is covered by the proxy-wide lock alone.
    case services(Set<String>)

    /// One service's routing.
    public static func service(_ name: String) -> LockScope { .services([name]) }

    /// A change to `pool` (its servers, its version): covered by the lock of every service
    /// whose routing in `state` names the pool (active, standby, canary or a rule).
    public static func pool(_ pool: String, in state: RuntimeState) -> LockScope { .services(state.services(routingTo: pool)) }
}

/// Every deploy lock held at once: at most one proxy-wide lock, at most one per service, and
/// never the proxy-wide lock together with a service lock (`LockRules.take` keeps it so).
/// Listed proxy-wide first, then by service name.
public struct LockSet: Equatable, Sendable {
    public private(set) var locks: [LockInfo]

    public init(_ locks: [LockInfo] = []) {
        self.locks = []
        for lock in locks { put(lock) }
    }

    public var isEmpty: Bool { locks.isEmpty }

    /// The proxy-wide lock, when held.
    public var proxyWide: LockInfo? { lock(service: nil) }

    /// The service locks, by service name.
    public var serviceLocks: [LockInfo] { locks.filter { $0.service != nil } }

    /// The lock of `service` (nil: the proxy-wide one).
    public func lock(service: String?) -> LockInfo? { locks.first { $0.service == service } }

    /// The lock whose token is `token`.
    public func lock(token: String?) -> LockInfo? {
        guard let token else { return nil }
        return locks.first { $0.token == token }
    }

    /// Adds `lock`, replacing the lock of the same scope.
    mutating func put(_ lock: LockInfo) {
        locks.removeAll { $0.service == lock.service }
        locks.append(lock)
        locks.sort { ($0.service ?? "") < ($1.service ?? "") } // service names are never empty: proxy-wide first
    }

    /// Removes the lock of `service` (nil: the proxy-wide one).
    mutating func remove(service: String?) { locks.removeAll { $0.service == service } }
}

/// The locks' rules, apart from where the locks are kept. Pure, so they are tested without a proxy.
///
/// - A change passes when every live lock that covers it was taken with the token it carries:
///   the proxy-wide lock covers everything; a service's lock covers that service's routing
///   and the pools that service routes to; a reload is covered by every lock.
/// - One lock per scope. A holder renews its lock by taking it again with its token.
/// - The proxy-wide lock cannot be taken while a service lock is held, and no service lock
///   can be taken while the proxy-wide lock is held: both are refused (423) with the holders
///   named, and the caller waits for them to be released or to expire, or breaks them.
public enum LockRules {
    /// The lock in force at `now`: nil when there is none or it has expired.
    public static func current(_ lock: LockInfo?, at now: Date) -> LockInfo? {
        guard let lock, lock.expires > now else { return nil }
        return lock
    }

    /// The locks in force at `now` (the expired ones dropped).
    public static func live(_ locks: LockSet, at now: Date) -> LockSet {
        LockSet(locks.locks.filter { $0.expires > now })
    }

    /// Whether a change carrying `token` may go ahead, under a single lock.
    public static func admits(_ lock: LockInfo?, token: String?, at now: Date) -> Bool {
        guard let held = current(lock, at: now) else { return true }
        return token == held.token
    }

    /// The lock that stops a change with `scope` carrying `token`: the first live lock that
    /// covers the change and has another token. Nil when the change may go ahead.
    public static func blocking(_ locks: LockSet, scope: LockScope, token: String?, at now: Date) -> LockInfo? {
        live(locks, at: now).locks.first { $0.covers(scope) && $0.token != token }
    }

    /// Why a lock cannot be taken.
    public enum Refusal: Error, Equatable, Sendable {
        /// Someone else holds the lock of this scope.
        case heldByAnother(LockInfo)
        /// The other kind of lock is held: the proxy-wide lock when a service lock is asked
        /// for, or the service locks (all listed) when the proxy-wide lock is asked for.
        case blockedBy([LockInfo])
        /// The token sent belongs to a live lock of another scope: a token renews its own lock only.
        case tokenOfAnotherLock(LockInfo)
    }

    /// Takes the lock of `service` (nil: the proxy-wide one), or renews it for the holder of
    /// its token. A new lock gets `newToken`, unless the caller sends a token that no live
    /// lock has (a holder whose lock lapsed takes it again with the same token); a renewal
    /// keeps the token and the time the lock was first taken.
    public static func take(_ locks: LockSet, service: String?, owner: String, reason: String, ttlMilliseconds: Int64,
                            token existing: String?, newToken: String, at now: Date) -> Result<LockSet, Refusal> {
        let held = live(locks, at: now)
        if let other = held.lock(token: existing), other.service != service { return .failure(.tokenOfAnotherLock(other)) }
        let same = held.lock(service: service)
        if let same, same.token != existing { return .failure(.heldByAnother(same)) }
        let conflicting = service == nil ? held.serviceLocks : held.proxyWide.map { [$0] } ?? []
        if !conflicting.isEmpty { return .failure(.blockedBy(conflicting)) }
        var next = held
        next.put(LockInfo(owner: owner, reason: reason, token: existing ?? newToken, since: same?.since ?? now,
                          expires: now.addingTimeInterval(Double(ttlMilliseconds) / 1000), service: service))
        return .success(next)
    }

    /// Why a lock cannot be released.
    public enum ReleaseRefusal: Error, Equatable, Sendable {
        /// No live lock of this scope (service, or nil for proxy-wide); the live locks are listed.
        case notLocked(service: String?, held: [LockInfo])
        /// The lock belongs to someone else: send its token, or force.
        case heldByAnother(LockInfo)
    }

    /// What a release did.
    public struct Release: Equatable, Sendable {
        public var locks: LockSet
        /// The lock that was released.
        public var released: LockInfo
        /// Released with force by someone without its token.
        public var broken: Bool
    }

    /// Releases a lock. Without `force`, the lock whose token is `token`, whatever its scope
    /// (`service`, when given, must name that lock's service). With `force`, the lock of
    /// `service` when given, else the lock of `token`, else the proxy-wide lock, whoever holds it.
    public static func release(_ locks: LockSet, service: String?, token: String?, force: Bool,
                               at now: Date) -> Result<Release, ReleaseRefusal> {
        let held = live(locks, at: now)
        let own = held.lock(token: token)
        let target: LockInfo
        if let own, service == nil || service == own.service {
            target = own
        } else {
            guard let other = held.lock(service: service) else { return .failure(.notLocked(service: service, held: held.locks)) }
            guard force else { return .failure(.heldByAnother(other)) }
            target = other
        }
        var next = held
        next.remove(service: target.service)
        return .success(Release(locks: next, released: target, broken: target.token != token))
    }
}
