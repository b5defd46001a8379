import SwitchyardConfig

/// Picks servers within one pool for one worker. Each worker owns its balancers, so
/// picking takes no lock; across workers the weights still hold because each worker's
/// share is weighted the same way.
public final class PoolBalancer {
    public private(set) var pool: PoolSnapshot
    /// Smooth weighted round robin state, one per server (nginx's `current_weight`).
    private var current: [Int]
    /// In-flight requests this worker has sent to each server (for least_request).
    public private(set) var active: [Int]
    private var random: SplitMix64

    public init(pool: PoolSnapshot, seed: UInt64) {
        self.pool = pool
        self.current = [Int](repeating: 0, count: pool.servers.count)
        self.active = [Int](repeating: 0, count: pool.servers.count)
        self.random = SplitMix64(seed: seed)
    }

    /// Takes a new version of the pool, keeping the state of servers that remain.
    public func update(to newPool: PoolSnapshot) {
        ejected = 0 // indexes change; the worker sets the mask again
        var newCurrent = [Int](repeating: 0, count: newPool.servers.count)
        var newActive = [Int](repeating: 0, count: newPool.servers.count)
        for (i, server) in newPool.servers.enumerated() {
            if let old = pool.servers.firstIndex(where: { $0.id == server.id }) {
                newCurrent[i] = current[old]
                newActive[i] = active[old]
            }
        }
        pool = newPool
        current = newCurrent
        active = newActive
    }

    /// The index of the server for the next request, or `nil` when every server has
    /// weight 0 or was already tried. `tried` has bit `i` set for server index `i`
    /// (servers past the 64th are never excluded).
    public func pick(excluding tried: UInt64 = 0) -> Int? {
        // Ejected servers are skipped, unless nothing else is left to try.
        if ejected != 0, let index = pickAny(excluding: tried | ejected) { return index }
        return pickAny(excluding: tried)
    }

    private func pickAny(excluding tried: UInt64) -> Int? {
        switch pool.balance {
        case .roundRobin: return pickRoundRobin(excluding: tried)
        case .leastRequest: return pickLeastRequest(excluding: tried)
        }
    }

    /// Servers (bit per index) that passive outlier detection has ejected in this worker.
    public var ejected: UInt64 = 0

    @inline(__always) static func isExcluded(_ i: Int, _ tried: UInt64) -> Bool {
        i < 64 && tried & (1 << UInt64(i)) != 0
    }

    /// nginx's smooth weighted round robin: every server gains its weight, the highest
    /// wins and pays back the total. Spreads a 5:1:1 pool as a a b a c a a, not a a a a a b c.
    func pickRoundRobin(excluding tried: UInt64) -> Int? {
        var best = -1
        var total = 0
        let servers = pool.servers
        for i in 0..<servers.count {
            let w = servers[i].weight
            if w <= 0 || Self.isExcluded(i, tried) { continue }
            current[i] += w
            total += w
            if best < 0 || current[i] > current[best] { best = i }
        }
        if best < 0 { return nil }
        current[best] -= total
        return best
    }

    /// Power of two random choices by active requests per unit of weight (Envoy's LEAST_REQUEST).
    func pickLeastRequest(excluding tried: UInt64) -> Int? {
        let servers = pool.servers
        var eligible = 0
        for i in 0..<servers.count where servers[i].weight > 0 && !Self.isExcluded(i, tried) { eligible += 1 }
        if eligible == 0 { return nil }
        let a = eligibleServer(Int(random.next() % UInt64(eligible)), excluding: tried, also: -1)
        if eligible == 1 { return a }
        let b = eligibleServer(Int(random.next() % UInt64(eligible - 1)), excluding: tried, also: a)
        // Compare active/weight without dividing: a1 * w2 against a2 * w1.
        let lhs = active[a] * servers[b].weight
        let rhs = active[b] * servers[a].weight
        if lhs == rhs { return servers[a].weight >= servers[b].weight ? a : b }
        return lhs < rhs ? a : b
    }

    /// The k-th server with a positive weight, skipping `excluding` and `also`.
    private func eligibleServer(_ k: Int, excluding tried: UInt64, also: Int) -> Int {
        var seen = 0
        for (i, server) in pool.servers.enumerated() where server.weight > 0 && !Self.isExcluded(i, tried) && i != also {
            if seen == k { return i }
            seen += 1
        }
        return -1
    }

    /// The stable id of the server at `index`, without copying the pool (which would
    /// retain its strings and arrays on every request). `index` comes from `pick`.
    public func serverID(at index: Int) -> Int { pool.servers[index].id }

    /// Where the server with `id` sits in the pool now. Positions move when servers are
    /// added or removed while requests are in flight, so an exchange keeps the id and the
    /// position it was picked at (`hint`), which is right unless the pool changed.
    @inline(__always)
    public func position(ofServer id: Int, hint: Int) -> Int? {
        let servers = pool.servers
        if hint >= 0 && hint < servers.count && servers[hint].id == id { return hint }
        return servers.firstIndex { $0.id == id }
    }

    /// The server with `id`, if the pool still has it.
    public func server(withID id: Int, hint: Int) -> ServerSnapshot? {
        position(ofServer: id, hint: hint).map { pool.servers[$0] }
    }

    /// Counts a request as started on the server with `id` (picked at `hint`).
    public func requestStarted(serverID id: Int, hint: Int) {
        guard let index = position(ofServer: id, hint: hint) else { return }
        active[index] += 1
    }

    /// Counts a request as finished on the server with `id` (picked at `hint`), wherever it
    /// sits now; nothing when the pool no longer has it.
    public func requestFinished(serverID id: Int, hint: Int) {
        guard let index = position(ofServer: id, hint: hint), active[index] > 0 else { return }
        active[index] -= 1
    }
}

/// A small fast PRNG; the data plane needs speed, not cryptographic strength.
public struct SplitMix64: Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
