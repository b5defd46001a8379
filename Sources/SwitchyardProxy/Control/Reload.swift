import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Reloading the configuration file in place.
extension ControlPlane {
    // MARK: Reload

    /// Settings that live in the workers or the process and so change only with a restart.
    static func restartOnlyChanges(from old: SwitchyardConfig, to new: SwitchyardConfig) -> [String] {
        var keys: [String] = []
        if old.workers != new.workers { keys.append("workers") }
        // Certificates reload; the addresses themselves need a restart.
        if old.listeners.map(\.bind) != new.listeners.map(\.bind) { keys.append("listeners") }
        if old.limits != new.limits { keys.append("limits") }
        if old.timeouts != new.timeouts { keys.append("timeouts") }
        if old.accessLog != new.accessLog { keys.append("access_log") }
        if old.admin != new.admin { keys.append("admin") }
        if old.stateFile != new.stateFile { keys.append("state_file") }
        if old.shutdownTimeout != new.shutdownTimeout { keys.append("shutdown_timeout") }
        if old.observability != new.observability { keys.append("observability") }
        if old.logFormat != new.logFormat { keys.append("log_format") }
        return keys
    }

    /// Reads the configuration file again and applies it without touching existing
    /// connections: pools, servers and services change at once. Runtime changes are kept
    /// where what they name still exists (as at a restart), unless `reset` asks to start
    /// from the file's routing. An invalid file is refused, and the running configuration
    /// stays. Returns the new generation and warnings for settings that need a restart.
    public func reload(reset: Bool, actor: Actor) throws(AdminError) -> (generation: UInt64, notes: [String]) {
        do throws(AdminError) {
            let result = try reloadFile(reset: reset, actor: actor)
            observed.recordReload(success: true)
            return result
        } catch {
            observed.recordReload(success: false)
            throw error
        }
    }

    private func reloadFile(reset: Bool, actor: Actor) throws(AdminError) -> (generation: UInt64, notes: [String]) {
        guard let configPath else {
            throw AdminError(409, "nothing to reload", "this instance runs an embedded configuration, not a file")
        }
        let fresh: SwitchyardConfig
        do {
            fresh = try ConfigLoader.load(path: configPath)
        } catch {
            throw AdminError(400, "invalid configuration", "\(configPath) was not applied; the running configuration stays. Problems:\n\(error.description)")
        }
        var notes = Self.restartOnlyChanges(from: config, to: fresh).map {
            "\($0) changed in the file; it takes effect at the next restart"
        }
        if let reloadCertificates, fresh.listeners.map(\.bind) == config.listeners.map(\.bind) {
            do {
                let count = try reloadCertificates(fresh)
                if count > 0 { notes.append("certificates reloaded for \(count) TLS listener(s); new handshakes use them") }
            } catch {
                throw AdminError(400, "invalid certificates", "\(error); the running configuration and certificates stay")
            }
        }
        var next = RuntimeState(config: fresh, generation: state.generation)
        let newFileState = next
        if reset {
            // Version labels say what the servers run, not how traffic is routed: a reset keeps them.
            next.versions = state.versions.filter { next.servers[$0.key] != nil }
        } else {
            notes += next.merge(runtime: state, base: fileState)
        }
        next.generation = state.generation + 1
        let before: [String: Any] = ["pools": config.pools.map(\.name), "services": config.services.map(\.name)]
        // Keep the parts that only change at restart as they are running.
        var applied = fresh
        applied.workers = config.workers
        if applied.listeners.map(\.bind) != config.listeners.map(\.bind) { applied.listeners = config.listeners }
        applied.limits = config.limits
        applied.timeouts = config.timeouts
        applied.accessLog = config.accessLog
        applied.admin = config.admin
        applied.stateFile = config.stateFile
        applied.shutdownTimeout = config.shutdownTimeout
        applied.observability = config.observability
        applied.logFormat = config.logFormat
        let saved = savedState()
        config = applied
        state = next
        fileState = newFileState
        history = Self.prune(history, for: state)
        try makeDurable(actor: actor, action: reset ? "reload (reset runtime changes)" : "reload", target: configPath, before: before,
                        after: ["pools": config.pools.map(\.name), "services": config.services.map(\.name), "notes": notes],
                        restoring: saved)
        resolveNamesAfterReload()
        health?.sync(startup: false)
        publish()
        return (state.generation, notes)
    }
}
