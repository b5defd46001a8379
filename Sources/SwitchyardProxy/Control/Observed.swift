import Foundation

/// What the control plane counts about itself for `/metrics`: reloads, the outcomes of name
/// resolutions, the release, and whether the proxy takes traffic. Control thread only.
final class ObservedCounters {
    /// Where the proxy is in its life, as `/ready` and `switchyard_ready` tell it.
    enum Phase { case starting, serving, draining }

    var phase = Phase.starting
    /// The release of the binary (`switchyard version`), for `switchyard_build_info`.
    var version = "unknown"
    var reloadSuccesses = 0
    var reloadFailures = 0
    /// Seconds since the Unix epoch; nil before the first.
    var lastReloadAt: Double?
    var lastReloadSucceededAt: Double?
    var lastReloadSucceeded = true
    /// Name resolutions of all names together, by outcome.
    var dnsSuccesses = 0
    var dnsFailures = 0

    func recordReload(success: Bool) {
        let now = Date().timeIntervalSince1970
        lastReloadAt = now
        lastReloadSucceeded = success
        if success {
            reloadSuccesses += 1
            lastReloadSucceededAt = now
        } else {
            reloadFailures += 1
        }
    }
}
