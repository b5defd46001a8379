import CLibevent

/// One connection's deadline on a libevent timer, armed lazily: moving the deadline later
/// only stores a number, and the timer re-arms itself for the rest when it fires early.
/// That keeps timer operations off the common path (a deadline pushed back on every read).
struct Deadline {
    var event: OpaquePointer!
    private(set) var due: Int64 = .max
    private var armedUntil: Int64 = .max

    var isSet: Bool { due != .max }

    @inline(__always)
    mutating func set(after ms: Int64) {
        due = monotonicMilliseconds() + ms
        if armedUntil > due {
            var tv = timeval(milliseconds: ms)
            event_add(event, &tv)
            armedUntil = due
        }
    }

    mutating func clear() { due = .max }

    /// Call when the timer fires. Returns true when the deadline has really passed (and
    /// clears it); false when it was cleared or moved later (the timer is re-armed).
    mutating func fire() -> Bool {
        armedUntil = .max
        guard due != .max else { return false }
        let now = monotonicMilliseconds()
        if now < due {
            var tv = timeval(milliseconds: due - now)
            event_add(event, &tv)
            armedUntil = due
            return false
        }
        due = .max
        return true
    }
}
