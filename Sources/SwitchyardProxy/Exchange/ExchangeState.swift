import SwitchyardHTTP
import SwitchyardRouting

/// What one exchange needs while it is in progress, with the exchange's scratch text
/// (`ClientConnection.Scratch`). Kept apart from `ClientConnection` so that an idle
/// keep-alive connection holds none of it: a connection takes a state from its worker's pool
/// when an exchange first writes one of these fields and gives it back when the exchange ends
/// (`ClientConnection.releaseExchange`).
///
final class ExchangeState {
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
    let scratch: UnsafeMutablePointer<UInt8>

    init() { scratch = .allocate(capacity: ClientConnection.Scratch.size) }
    deinit { scratch.deallocate() }

    /// Every field back to its initial value, for the next exchange.
    func reset() {
        upstreamHead = nil
        upstreamHeadSent = 0
        requestIDLength = 0
        setCookieLength = 0
        logHostLength = 0
        upstream = nil
        method = .get
        version = .http11
        isUpgrade = false
        responseHeadDone = false
        upstreamReusable = false
        requestBytesCommitted = false
        countedActive = false
        retriedStale = false
        outcomeRecorded = false
        upstreamFault = false
        exchangeLogged = true
        routeReason = nil
        request = BodyWindow()
        response = BodyWindow()
        status = 0
        interimResponses = 0
        poolIndex = -1
        serviceIndex = -1
        balancer = nil
        serverID = -1
        serverPositionHint = -1
        triedServers = 0
        attempts = 0
        bytesSent = 0
        startMicros = 0
        upstreamStatus = 0
        upstreamStartMicros = 0
        upstreamHeadMicros = 0
        requestHeadBytes = 0
        logMethod = ""
        logPath = ""
        logService = nil
    }
}

/// Per-worker free list of exchange states, so that starting an exchange does not call malloc.
final class ExchangePool {
    private var free: [ExchangeState] = []
    private let maxFree: Int
    /// Read by connections between exchanges: every field at its initial value, never written.
    let idle = ExchangeState()

    init(maxFree: Int = 1024) {
        self.maxFree = maxFree
        free.reserveCapacity(maxFree)
    }

    @inline(__always) func take() -> ExchangeState { free.popLast() ?? ExchangeState() }

    @inline(__always) func give(_ state: ExchangeState) {
        state.reset()
        if free.count < maxFree { free.append(state) }
    }
}

/// The exchange's fields as properties of the connection, so the state machine reads as
/// before: reading between exchanges gives the initial values, and the first write takes a
/// state from the pool.
extension ClientConnection {
    var upstreamHead: IOBuffer? {
        @inline(__always) _read { yield current.upstreamHead }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstreamHead }
    }
    var upstreamHeadSent: Int {
        @inline(__always) _read { yield current.upstreamHeadSent }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstreamHeadSent }
    }
    var requestIDLength: Int {
        @inline(__always) _read { yield current.requestIDLength }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.requestIDLength }
    }
    var setCookieLength: Int {
        @inline(__always) _read { yield current.setCookieLength }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.setCookieLength }
    }
    var logHostLength: Int {
        @inline(__always) _read { yield current.logHostLength }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.logHostLength }
    }
    var upstream: UpstreamConnection? {
        @inline(__always) _read { yield current.upstream }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstream }
    }
    var method: HTTPMethod {
        @inline(__always) _read { yield current.method }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.method }
    }
    var version: HTTPVersion {
        @inline(__always) _read { yield current.version }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.version }
    }
    var isUpgrade: Bool {
        @inline(__always) _read { yield current.isUpgrade }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.isUpgrade }
    }
    var responseHeadDone: Bool {
        @inline(__always) _read { yield current.responseHeadDone }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.responseHeadDone }
    }
    var upstreamReusable: Bool {
        @inline(__always) _read { yield current.upstreamReusable }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstreamReusable }
    }
    var requestBytesCommitted: Bool {
        @inline(__always) _read { yield current.requestBytesCommitted }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.requestBytesCommitted }
    }
    var countedActive: Bool {
        @inline(__always) _read { yield current.countedActive }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.countedActive }
    }
    var retriedStale: Bool {
        @inline(__always) _read { yield current.retriedStale }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.retriedStale }
    }
    var outcomeRecorded: Bool {
        @inline(__always) _read { yield current.outcomeRecorded }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.outcomeRecorded }
    }
    var upstreamFault: Bool {
        @inline(__always) _read { yield current.upstreamFault }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstreamFault }
    }
    var exchangeLogged: Bool {
        @inline(__always) _read { yield current.exchangeLogged }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.exchangeLogged }
    }
    var routeReason: RouteReason? {
        @inline(__always) _read { yield current.routeReason }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.routeReason }
    }
    var request: BodyWindow {
        @inline(__always) _read { yield current.request }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.request }
    }
    var response: BodyWindow {
        @inline(__always) _read { yield current.response }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.response }
    }
    var status: Int {
        @inline(__always) _read { yield current.status }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.status }
    }
    var interimResponses: Int {
        @inline(__always) _read { yield current.interimResponses }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.interimResponses }
    }
    var poolIndex: Int {
        @inline(__always) _read { yield current.poolIndex }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.poolIndex }
    }
    var serviceIndex: Int {
        @inline(__always) _read { yield current.serviceIndex }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.serviceIndex }
    }
    var balancer: PoolBalancer? {
        @inline(__always) _read { yield current.balancer }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.balancer }
    }
    var serverID: Int {
        @inline(__always) _read { yield current.serverID }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.serverID }
    }
    var serverPositionHint: Int {
        @inline(__always) _read { yield current.serverPositionHint }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.serverPositionHint }
    }
    var triedServers: UInt64 {
        @inline(__always) _read { yield current.triedServers }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.triedServers }
    }
    var attempts: Int {
        @inline(__always) _read { yield current.attempts }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.attempts }
    }
    var bytesSent: Int {
        @inline(__always) _read { yield current.bytesSent }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.bytesSent }
    }
    var startMicros: Int64 {
        @inline(__always) _read { yield current.startMicros }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.startMicros }
    }
    var upstreamStatus: Int {
        @inline(__always) _read { yield current.upstreamStatus }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstreamStatus }
    }
    var upstreamStartMicros: Int64 {
        @inline(__always) _read { yield current.upstreamStartMicros }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstreamStartMicros }
    }
    var upstreamHeadMicros: Int64 {
        @inline(__always) _read { yield current.upstreamHeadMicros }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.upstreamHeadMicros }
    }
    var requestHeadBytes: Int {
        @inline(__always) _read { yield current.requestHeadBytes }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.requestHeadBytes }
    }
    var logMethod: String {
        @inline(__always) _read { yield current.logMethod }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.logMethod }
    }
    var logPath: String {
        @inline(__always) _read { yield current.logPath }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.logPath }
    }
    var logService: String? {
        @inline(__always) _read { yield current.logService }
        @inline(__always) _modify { if exchange == nil { takeExchange() }; yield &current.logService }
    }
}
