import CLibevent

/// A connection whose deadline a worker's `DeadlineQueue` keeps.
protocol DeadlineHolder: AnyObject {
    var deadline: DeadlineLinks<Self> { get set }
    /// The deadline passed; the queue has already cleared it.
    func deadlinePassed()
}

/// A holder's place in its worker's deadline lists.
struct DeadlineLinks<Holder: AnyObject> {
    /// When the deadline passes, in monotonic milliseconds; meaningful while `isSet`.
    fileprivate(set) var due: Int64 = .max
    // Unmanaged: the lists do not own their holders (a holder clears its deadline before it
    // goes), and references that count would cost a retain and release per link change.
    fileprivate var next: Unmanaged<Holder>?
    fileprivate var previous: Unmanaged<Holder>?
    /// The list that holds it, or -1.
    fileprivate var list: Int32 = -1

    var isSet: Bool { list >= 0 }
}

/// The deadlines of one kind of connection (clients, upstreams) on one worker, without a
/// timer per connection.
///
/// Every deadline is "now plus one of a few configured durations", so deadlines of the same
/// duration come due in the order they were set: each duration has a list, a new deadline
/// goes to the end of its list, and only the lists' first entries are ever compared. Setting,
/// moving and clearing a deadline are a few pointer updates; the worker has one libevent
/// timer (`DeadlineTimer`) for the earliest of all. This is how a connection costs no timer
/// event (128 bytes and an allocation) and a keep-alive request no timer-heap operation.
final class DeadlineQueue<Holder: DeadlineHolder> {
    private struct List {
        var duration: Int64
        var head: Unmanaged<Holder>?
        var tail: Unmanaged<Holder>?
    }

    // A buffer of its own rather than an Array: an Array's element written in place costs a
    // uniqueness check, and reading one a retain of the Array's storage, on every request.
    private var lists: UnsafeMutablePointer<List>
    private var listCount = 0
    private var listCapacity = 8
    // A strong `let`: Swift calls through it without reference counting, whereas an
    // unowned(unsafe) reference is retained and released around every call.
    private let timer: DeadlineTimer

    init(timer: DeadlineTimer) {
        self.timer = timer
        lists = .allocate(capacity: listCapacity)
    }

    deinit {
        lists.deinitialize(count: listCount)
        lists.deallocate()
    }

    /// Sets (or moves) `holder`'s deadline to `ms` milliseconds from now (at least 1).
    @inline(__always)
    func set(_ holder: Holder, after ms: Int64) {
        let duration = max(ms, 1)
        let now = monotonicMilliseconds()
        let due = now &+ duration
        let index = listIndex(for: duration)
        if holder.deadline.list == Int32(index), lists[index].tail?.toOpaque() == Unmanaged.passUnretained(holder).toOpaque() {
            holder.deadline.due = due // already last in its list: stays last
        } else {
            clear(holder)
            append(holder, to: index, due: due)
        }
        timer.arm(due: due, now: now)
    }

    /// Removes `holder`'s deadline, if it has one.
    @inline(__always)
    func clear(_ holder: Holder) {
        let index = Int(holder.deadline.list)
        guard index >= 0, index < listCount else { return }
        let next = holder.deadline.next
        let previous = holder.deadline.previous
        // Guaranteed references: a holder in a list is alive (it clears its deadline before it goes).
        if let previous { previous._withUnsafeGuaranteedRef { $0.deadline.next = next } } else { lists[index].head = next }
        if let next { next._withUnsafeGuaranteedRef { $0.deadline.previous = previous } } else { lists[index].tail = previous }
        holder.deadline = DeadlineLinks()
    }

    /// The earliest deadline held, or `Int64.max`.
    var earliest: Int64 {
        var result = Int64.max
        for index in 0..<listCount {
            if let head = lists[index].head { result = min(result, head._withUnsafeGuaranteedRef { $0.deadline.due }) }
        }
        return result
    }

    /// Tells every holder whose deadline is at or before `now`, each after clearing it.
    /// A holder that sets a new deadline while being told is due later than `now`.
    func expire(now: Int64) {
        var index = 0
        while index < listCount {
            while let first = lists[index].head {
                let head = first.takeUnretainedValue()
                guard head.deadline.due <= now else { break }
                clear(head)
                head.deadlinePassed()
            }
            index += 1
        }
    }

    private func append(_ holder: Holder, to index: Int, due: Int64) {
        holder.deadline.due = due
        holder.deadline.list = Int32(index)
        holder.deadline.next = nil
        let link = Unmanaged.passUnretained(holder)
        holder.deadline.previous = lists[index].tail
        if let tail = lists[index].tail { tail._withUnsafeGuaranteedRef { $0.deadline.next = link } } else { lists[index].head = link }
        lists[index].tail = link
    }

    /// The list for `duration`: its own, or an empty one taken over, or a new one. Few
    /// durations are configured; the count of lists stays at most the count in use at once.
    @inline(__always)
    private func listIndex(for duration: Int64) -> Int {
        for index in 0..<listCount where lists[index].duration == duration { return index }
        for index in 0..<listCount where lists[index].head == nil {
            lists[index].duration = duration
            return index
        }
        if listCount == listCapacity {
            let larger = UnsafeMutablePointer<List>.allocate(capacity: listCapacity * 2)
            larger.moveInitialize(from: lists, count: listCount)
            lists.deallocate()
            lists = larger
            listCapacity *= 2
        }
        (lists + listCount).initialize(to: List(duration: duration))
        listCount += 1
        return listCount - 1
    }
}

/// A worker's one timer for all its deadlines, armed for the earliest. Moving a deadline
/// later arms nothing; the worker re-arms it for what is left each time it fires.
final class DeadlineTimer {
    var event: OpaquePointer?
    private var armedUntil: Int64 = .max

    @inline(__always)
    func arm(due: Int64, now: Int64) {
        guard due < armedUntil, let event else { return }
        var tv = timeval(milliseconds: max(due - now, 0))
        event_add(event, &tv)
        armedUntil = due
    }

    /// Call first when the timer fires: it is no longer armed.
    func fired() { armedUntil = .max }
}
