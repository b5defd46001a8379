import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardRouting

/// Resolves names on threads of their own, so that neither a worker nor the control thread
/// ever waits for DNS: the control thread submits jobs and is woken when outcomes are ready.
/// Blocking resolvers (getaddrinfo, a DNS server that does not answer) only ever hold up
/// these threads; two of them keep one slow name from delaying all others.
final class ResolverThreads: @unchecked Sendable {
    /// A job and where to resolve it.
    struct Request: Sendable {
        let job: ResolvedNames.Job
        /// DNS servers to ask; empty for the system's resolver.
        let servers: [SocketAddress]
        let timeout: Duration
    }

    struct Outcome: Sendable {
        let job: ResolvedNames.Job
        let result: Result<[SocketAddress], ResolutionFailure>
    }

    /// Guards everything below; threads wait on it for work, `wait(for:until:)` for outcomes.
    private let condition = NSCondition()
    private var queue: [Request] = []
    private var outcomes: [Outcome] = []
    /// Called (on a resolver thread) after an outcome is added.
    private var onOutcome: (@Sendable () -> Void)?

    init(threads: Int = 2) {
        for index in 0..<threads {
            let thread = Thread { [self] in self.serve() }
            thread.name = "switchyard-resolver-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Sets what wakes the control thread when an outcome is ready (it then calls `takeOutcomes`).
    func setWake(_ wake: @escaping @Sendable () -> Void) {
        condition.lock()
        onOutcome = wake
        condition.unlock()
    }

    func submit(_ requests: [Request]) {
        guard !requests.isEmpty else { return }
        condition.lock()
        queue += requests
        condition.broadcast()
        condition.unlock()
    }

    /// The outcomes ready now, removed from the queue.
    func takeOutcomes() -> [Outcome] {
        condition.lock()
        defer { condition.unlock() }
        let ready = outcomes
        outcomes.removeAll()
        return ready
    }

    /// Waits until every job of `tickets` has an outcome, or `deadline` passes (start and
    /// reload wait for first answers; this is the only blocking wait, bounded).
    func wait(for tickets: Set<UInt64>, until deadline: Date) {
        condition.lock()
        defer { condition.unlock() }
        while !tickets.isSubset(of: Set(outcomes.map(\.job.ticket))) {
            if !condition.wait(until: deadline) { return }
        }
    }

    private func serve() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let request = queue.removeFirst()
            condition.unlock()
            let result = Self.resolve(request)
            condition.lock()
            outcomes.append(Outcome(job: request.job, result: result))
            condition.broadcast()
            let wake = onOutcome
            condition.unlock()
            wake?()
        }
    }

    static func resolve(_ request: Request) -> Result<[SocketAddress], ResolutionFailure> {
        if request.servers.isEmpty { return SystemResolver.resolve(request.job.target, family: request.job.family) }
        return DNSClient.resolve(request.job.target, family: request.job.family, servers: request.servers, timeout: request.timeout)
    }
}
