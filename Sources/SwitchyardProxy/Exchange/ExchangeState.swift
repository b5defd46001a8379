import SwitchyardHTTP
import SwitchyardRouting

/// What one exchange needs while it is in progress, with the exchange's scratch text
/// (`ClientConnection.Scratch`). Kept apart from `ClientConnection` so that an idle
/// keep-alive connection holds none of it: a connection takes a state from its worker's pool
/// when an exchange first writes one of these fields and gives it back when the exchange ends
/// (`ClientConnection.releaseExchange`).
///
/// A struct in a slot the pool allocates, reached through a pointer: reading or writing a
/// field through a class reference made Swift retain and release the state around each
/// access (about a tenth of the worker's CPU time went to reference counting).
struct ExchangeState {
    /// The request head as sent upstream, kept until the response starts (for a retry).
    var upstreamHead: IOBuffer? = nil
    var upstreamHeadSent: Int = 0
    /// Lengths of the texts in `scratch` (see `ClientConnection.Scratch`).
    var requestIDLength: Int = 0
    var setCookieLength: Int = 0
    var logHostLength: Int = 0
    var upstream: UpstreamConnection? = nil
    var method: HTTPMethod = .get
    var version: HTTPVersion = .http11
    var isUpgrade: Bool = false
    var responseHeadDone: Bool = false
    var upstreamReusable: Bool = false
    var requestBytesCommitted: Bool = false
    var countedActive: Bool = false
    var retriedStale: Bool = false
    /// The current server's outcome was already reported to outlier detection.
    var outcomeRecorded: Bool = false
    /// The exchange ended early because of the upstream (not the client).
    var upstreamFault: Bool = false
    var exchangeLogged: Bool = true
    /// Why the pool was chosen (for the access log).
    var routeReason: RouteReason? = nil
    var request: BodyWindow = BodyWindow()
    var response: BodyWindow = BodyWindow()
    var status: Int = 0
    /// 1xx heads relayed in this exchange.
    var interimResponses: Int = 0
    var poolIndex: Int = -1
    /// The service of the exchange (its `statsID`), counted while it is active.
    var serviceIndex: Int = -1
    /// The balancer of the pool this exchange uses, kept so a snapshot change mid-exchange
    /// cannot make the exchange count against the wrong pool.
    var balancer: PoolBalancer? = nil
    /// The server in use, by its stable id; its position in the pool when it was picked is
    /// only a hint, since servers added or removed meanwhile move positions.
    var serverID: Int = -1
    var serverPositionHint: Int = -1
    var triedServers: UInt64 = 0
    var attempts: Int = 0
    var bytesSent: Int = 0
    var startMicros: Int64 = 0
    /// The upstream's answer and how long it took (monotonic µs, the start of the last
    /// attempt to the response head; 0 until then), and the request head's size: for the access log.
    var upstreamStatus: Int = 0
    var upstreamStartMicros: Int64 = 0
    var upstreamHeadMicros: Int64 = 0
    var requestHeadBytes: Int = 0
    var logMethod: String = ""
    var logPath: String = ""
    /// The service by name: the snapshot may change mid-exchange.
    var logService: String? = nil
    /// Owned by the slot (see `ExchangePool`): kept across exchanges.
    let scratch: UnsafeMutablePointer<UInt8>

    init(scratch: UnsafeMutablePointer<UInt8>) { self.scratch = scratch }

    /// Every field back to its initial value, for the next exchange (the scratch stays).
    mutating func reset() { self = ExchangeState(scratch: scratch) }
}

/// Per-worker free list of exchange state slots, so that starting an exchange does not call
/// malloc. The pool lives as long as its worker, which outlives every connection.
final class ExchangePool {
    typealias Slot = UnsafeMutablePointer<ExchangeState>
    private var free: [Slot] = []
    private let maxFree: Int
    /// Read by connections between exchanges: every field at its initial value, never written.
    let idle: Slot

    init(maxFree: Int = 1024) {
        self.maxFree = maxFree
        free.reserveCapacity(maxFree)
        idle = Self.makeSlot()
    }

    deinit {
        for slot in free { Self.destroy(slot) }
        Self.destroy(idle)
    }

    @inline(__always) func take() -> Slot { free.popLast() ?? Self.makeSlot() }

    @inline(__always) func give(_ slot: Slot) {
        slot.pointee.reset()
        if free.count < maxFree { free.append(slot) } else { Self.destroy(slot) }
    }

    private static func makeSlot() -> Slot {
        let slot = Slot.allocate(capacity: 1)
        slot.initialize(to: ExchangeState(scratch: .allocate(capacity: ClientConnection.Scratch.size)))
        return slot
    }

    private static func destroy(_ slot: Slot) {
        slot.pointee.scratch.deallocate()
        slot.deinitialize(count: 1)
        slot.deallocate()
    }
}

/// The exchange's fields as properties of the connection, so the state machine reads as
/// before: reading between exchanges gives the initial values, and the first write takes a
/// state from the pool.
extension ClientConnection {
    var upstreamHead: IOBuffer? {
        @inline(__always) _read { yield current.pointee.upstreamHead }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstreamHead }
    }
    var upstreamHeadSent: Int {
        @inline(__always) _read { yield current.pointee.upstreamHeadSent }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstreamHeadSent }
    }
    var requestIDLength: Int {
        @inline(__always) _read { yield current.pointee.requestIDLength }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.requestIDLength }
    }
    var setCookieLength: Int {
        @inline(__always) _read { yield current.pointee.setCookieLength }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.setCookieLength }
    }
    var logHostLength: Int {
        @inline(__always) _read { yield current.pointee.logHostLength }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.logHostLength }
    }
    var upstream: UpstreamConnection? {
        @inline(__always) _read { yield current.pointee.upstream }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstream }
    }
    var method: HTTPMethod {
        @inline(__always) _read { yield current.pointee.method }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.method }
    }
    var version: HTTPVersion {
        @inline(__always) _read { yield current.pointee.version }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.version }
    }
    var isUpgrade: Bool {
        @inline(__always) _read { yield current.pointee.isUpgrade }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.isUpgrade }
    }
    var responseHeadDone: Bool {
        @inline(__always) _read { yield current.pointee.responseHeadDone }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.responseHeadDone }
    }
    var upstreamReusable: Bool {
        @inline(__always) _read { yield current.pointee.upstreamReusable }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstreamReusable }
    }
    var requestBytesCommitted: Bool {
        @inline(__always) _read { yield current.pointee.requestBytesCommitted }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.requestBytesCommitted }
    }
    var countedActive: Bool {
        @inline(__always) _read { yield current.pointee.countedActive }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.countedActive }
    }
    var retriedStale: Bool {
        @inline(__always) _read { yield current.pointee.retriedStale }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.retriedStale }
    }
    var outcomeRecorded: Bool {
        @inline(__always) _read { yield current.pointee.outcomeRecorded }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.outcomeRecorded }
    }
    var upstreamFault: Bool {
        @inline(__always) _read { yield current.pointee.upstreamFault }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstreamFault }
    }
    var exchangeLogged: Bool {
        @inline(__always) _read { yield current.pointee.exchangeLogged }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.exchangeLogged }
    }
    var routeReason: RouteReason? {
        @inline(__always) _read { yield current.pointee.routeReason }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.routeReason }
    }
    var request: BodyWindow {
        @inline(__always) _read { yield current.pointee.request }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.request }
    }
    var response: BodyWindow {
        @inline(__always) _read { yield current.pointee.response }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.response }
    }
    var status: Int {
        @inline(__always) _read { yield current.pointee.status }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.status }
    }
    var interimResponses: Int {
        @inline(__always) _read { yield current.pointee.interimResponses }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.interimResponses }
    }
    var poolIndex: Int {
        @inline(__always) _read { yield current.pointee.poolIndex }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.poolIndex }
    }
    var serviceIndex: Int {
        @inline(__always) _read { yield current.pointee.serviceIndex }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.serviceIndex }
    }
    var balancer: PoolBalancer? {
        @inline(__always) _read { yield current.pointee.balancer }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.balancer }
    }
    var serverID: Int {
        @inline(__always) _read { yield current.pointee.serverID }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.serverID }
    }
    var serverPositionHint: Int {
        @inline(__always) _read { yield current.pointee.serverPositionHint }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.serverPositionHint }
    }
    var triedServers: UInt64 {
        @inline(__always) _read { yield current.pointee.triedServers }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.triedServers }
    }
    var attempts: Int {
        @inline(__always) _read { yield current.pointee.attempts }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.attempts }
    }
    var bytesSent: Int {
        @inline(__always) _read { yield current.pointee.bytesSent }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.bytesSent }
    }
    var startMicros: Int64 {
        @inline(__always) _read { yield current.pointee.startMicros }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.startMicros }
    }
    var upstreamStatus: Int {
        @inline(__always) _read { yield current.pointee.upstreamStatus }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstreamStatus }
    }
    var upstreamStartMicros: Int64 {
        @inline(__always) _read { yield current.pointee.upstreamStartMicros }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstreamStartMicros }
    }
    var upstreamHeadMicros: Int64 {
        @inline(__always) _read { yield current.pointee.upstreamHeadMicros }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.upstreamHeadMicros }
    }
    var requestHeadBytes: Int {
        @inline(__always) _read { yield current.pointee.requestHeadBytes }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.requestHeadBytes }
    }
    var logMethod: String {
        @inline(__always) _read { yield current.pointee.logMethod }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.logMethod }
    }
    var logPath: String {
        @inline(__always) _read { yield current.pointee.logPath }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.logPath }
    }
    var logService: String? {
        @inline(__always) _read { yield current.pointee.logService }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.pointee.logService }
    }
}
