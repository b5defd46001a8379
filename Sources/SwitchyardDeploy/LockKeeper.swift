import Foundation

/// Renews a rollout's locks on every proxy every third of their TTL, and keeps the rollout's
/// heartbeat, on its own thread: a start hook or a health wait may take longer than the TTL,
/// and the locks must not lapse under it.
final class LockKeeper: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false
    private let locks: [(environment: String, client: AdminClient)]
    private let ttl: Duration
    private let owner: String
    private let reason: String
    private let service: String
    private let heartbeat: @Sendable () -> Void
    private let warn: @Sendable (String) -> Void

    /// - Parameters:
    ///   - locks: a client per proxy, named for messages, each with its own copy of the lock token.
    ///   - service: the service the locks are taken for.
    ///   - heartbeat: called every 2 s at most.
    ///   - warn: receives renewal failures.
    init(locks: [(environment: String, client: AdminClient)], ttl: Duration, owner: String, reason: String, service: String,
         heartbeat: @escaping @Sendable () -> Void, warn: @escaping @Sendable (String) -> Void) {
        self.locks = locks
        self.ttl = ttl
        self.owner = owner
        self.reason = reason
        self.service = service
        self.heartbeat = heartbeat
        self.warn = warn
        let thread = Thread { [self] in loop() }
        thread.name = "switchyard-locks"
        thread.start()
    }

    private var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    private func loop() {
        let renewEvery = Double(ttl.milliseconds) / 3000
        let tick = min(2.0, renewEvery)
        var lastRenew = Date()
        while true {
            condition.lock()
            if !stopped { _ = condition.wait(until: Date().addingTimeInterval(tick)) }
            let done = stopped
            condition.unlock()
            if done { return }
            // Renewals first: the heartbeat writes the history, which can wait on SQLite's lock
            // (up to its busy timeout) while another process writes; a lock must not expire for that.
            if Date().timeIntervalSince(lastRenew) >= renewEvery {
                lastRenew = Date()
                for (environment, client) in locks where !isStopped {
                    do { try client.api.renewLock(owner: owner, ttl: "\(ttl.milliseconds)ms", reason: reason, service: service) }
                    catch { warn("could not renew the lock of \(environment): \(error)") }
                }
            }
            heartbeat()
        }
    }

    /// Stops renewing (before the locks are released).
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
