import CLibevent
import Foundation
import Glibc
import SwitchyardRouting

/// Hands snapshots to the workers and reads their counters. A snapshot is stored in each
/// worker's slot and the worker woken; the publisher waits until every worker has taken it,
/// so a change is acknowledged only when all of them route with it.
final class WorkerPublisher {
    var workers: [Worker] = []
    private var statsRound: UInt64 = 0
    /// Microseconds from publishing a snapshot to the last worker's acknowledgement (the latest 1,000).
    private(set) var latencies: [Double] = []
    /// The snapshot the workers have now (the last one published).
    private(set) var published: RoutingSnapshot?

    /// Publishes `snapshot` to every worker and waits for all acknowledgements (5 s at most:
    /// a worker stuck longer is visible in status). Returns the microseconds it took.
    @discardableResult
    func publish(_ snapshot: RoutingSnapshot) -> Double {
        let start = monotonicMicroseconds()
        let previous = published
        let publication = Publication(snapshot, previous: previous,
                                      changedPools: previous.flatMap { RoutingSnapshot.changedPools(from: $0, to: snapshot) })
        published = snapshot
        // The publications replaced hold the snapshot before the previous one: freeing it
        // (thousands of pools) waits until every worker has acknowledged.
        var replaced: [Publication] = []
        replaced.reserveCapacity(workers.count)
        for worker in workers {
            replaced.append(worker.slot.exchange(publication))
            worker.notifySnapshot()
        }
        let deadline = start + 5_000_000
        // A worker that has stopped (during a graceful stop) never answers again.
        while workers.contains(where: { $0.acknowledgedGeneration.load(ordering: .acquiring) < snapshot.generation
                                        && !$0.exited.load(ordering: .acquiring) }) {
            if monotonicMicroseconds() > deadline { break }
            sched_yield()
        }
        let elapsed = Double(monotonicMicroseconds() - start)
        replaced.removeAll()
        freeRetired()
        latencies.append(elapsed)
        if latencies.count > 1000 { latencies.removeFirst(latencies.count - 1000) }
        return elapsed
    }

    /// Frees, here on the control thread, the snapshots the workers are done with.
    func freeRetired() {
        for worker in workers { _ = worker.slot.takeRetired() }
    }

    /// Counters summed over all workers, `ServerStats.stride` per server id and per service.
    func collectStats() -> StatsCopy {
        freeRetired()
        statsRound += 1
        for worker in workers { worker.requestStats(round: statsRound) }
        let deadline = monotonicMicroseconds() + 2_000_000
        while workers.contains(where: { $0.statsAnswered.load(ordering: .acquiring) < statsRound && !$0.exited.load(ordering: .acquiring) }),
              monotonicMicroseconds() < deadline {
            sched_yield()
        }
        var total = StatsCopy()
        func add(_ from: [Int], to into: inout [Int]) {
            if into.count < from.count { into += [Int](repeating: 0, count: from.count - into.count) }
            for i in 0..<from.count { into[i] &+= from[i] }
        }
        for worker in workers {
            let copy = worker.statsSlot.withLock { $0 }
            add(copy.servers, to: &total.servers)
            add(copy.services, to: &total.services)
            total.tlsHandshakeFailures += copy.tlsHandshakeFailures
            total.acceptErrors += copy.acceptErrors
            total.clientConnections.append(copy.clientConnections.reduce(0, +))
        }
        return total
    }
}
