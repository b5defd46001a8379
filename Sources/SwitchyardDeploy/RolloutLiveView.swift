import Foundation
import Glibc

/// The environment and phase of a running rollout, read by the heartbeat thread.
final class LiveProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var environment: String?
    private var text = "starting"
    func set(_ environment: String?, _ text: String) { lock.lock(); self.environment = environment; self.text = text; lock.unlock() }
    func get() -> (String?, String) { lock.lock(); defer { lock.unlock() }; return (environment, text) }
}

/// What the live terminal line shows about the current environment.
struct LiveStatus: Equatable {
    var phase = "starting"
    /// The environment's progress (0 to 1) when the current stage began.
    var progress = 0.0
    /// The share of the environment's progress the current stage covers.
    var span = 0.0
    var weight: String?
    var errorRate: Double?
    var p99: Double?
    /// When the current pause or watch ends (paused time moves it later).
    var until: Date?
    /// The length of the pause or watch `until` ends.
    var stageLength = 0.0

    /// The progress to draw at `now`: the stage's start plus the part of its span already waited.
    func shownProgress(at now: Date) -> Double {
        guard let until, span > 0 else { return progress }
        let left = max(0, until.timeIntervalSince(now)) / max(0.001, stageLength)
        return progress + span * (1 - min(1, left))
    }

    /// The heartbeat's text: phase and weight.
    func summary(paused: Bool) -> String {
        (paused ? "paused: " : "") + phase + (weight.map { " at \($0)" } ?? "")
    }
}

extension Rollout {
    /// Waits `seconds` (nil: until promoted), in short ticks: handles controls, keeps the
    /// heartbeat and the live line, and calls `tick` (which may throw to end the wait).
    /// Paused time does not count. Returns true when `deploy promote` ended the wait early.
    ///
    /// A health wait passes `deferringFullPromotion`: a full promotion skips steps and
    /// analysis, never the health of what is promoted, so it is kept for the next wait.
    @discardableResult
    func wait(_ seconds: Double?, deferringFullPromotion: Bool = false, tick: (() throws -> Void)? = nil) throws -> Bool {
        var deadline = seconds.map { Date().addingTimeInterval($0) }
        controls.skipWait = false
        if controls.fullPromotionPending && !deferringFullPromotion {
            controls.fullPromotionPending = false
            throw Interruption.promoteFull
        }
        while true {
            let before = Date()
            do {
                try housekeeping()
            } catch Interruption.promoteFull where deferringFullPromotion {
                controls.fullPromotionPending = true
            }
            if controls.skipWait { controls.skipWait = false; return true }
            if !controls.paused {
                try tick?()
                if let deadline, Date() >= deadline { return false }
            }
            printer.status(environment: currentEnvironment ?? "-", phase: controls.paused ? "PAUSED (deploy resume)" : live.phase,
                           progress: live.shownProgress(at: Date()), weight: live.weight, errorRate: live.errorRate, p99: live.p99,
                           remaining: live.until?.timeIntervalSinceNow)
            liveProgress?.set(currentEnvironment, live.summary(paused: controls.paused))
            usleep(200_000)
            if controls.paused {
                pausedSeconds += Date().timeIntervalSince(before)
                deadline = deadline?.addingTimeInterval(Date().timeIntervalSince(before))
            }
        }
    }
}
