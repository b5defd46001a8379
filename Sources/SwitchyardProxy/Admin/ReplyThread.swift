import CLibevent
import Foundation
import Glibc

/// A reply written away from the control thread.
struct RenderedReply: Sendable {
    var status: Int
    var body: Data
    var contentType: String
    /// More header fields (`Content-Encoding`, `Vary`).
    var headers: [(name: String, value: String)] = []
}

/// Writes the replies that grow with the configuration (the whole status, a scrape) on a
/// thread of its own, so that the control thread goes on taking changes while megabytes of
/// text are written. The control thread copies what a reply is written from (the published
/// snapshot, the counters, the state: values only), hands the work over with the request,
/// and sends the reply when this thread wakes it.
///
/// One thread writes one reply at a time, in the order asked. At most `maxWaiting` replies
/// wait; past that `submit` refuses, and the caller answers 503.
final class ReplyThread: @unchecked Sendable {
    static let maxWaiting = 16

    /// Guards everything below.
    private let condition = NSCondition()
    private var queue: [(id: UInt64, work: @Sendable () -> RenderedReply)] = []
    private var finished: [(id: UInt64, reply: RenderedReply)] = []
    /// Wakes the control loop when a reply is finished; nil once closed, so that nothing
    /// touches the event after it is freed.
    private var wakeEvent: OpaquePointer?
    private var closed: Bool { wakeEvent == nil }
    private var waiting: [UInt64: OpaquePointer] = [:]
    private var nextID: UInt64 = 0
    private let send: (OpaquePointer, RenderedReply) -> Void

    /// - Parameter send: sends a finished reply to its request; called on the control thread.
    init(base: OpaquePointer, name: String, send: @escaping (OpaquePointer, RenderedReply) -> Void) throws {
        self.send = send
        guard let event = event_new(base, -1, 0, replyThreadWakeCallback, Unmanaged.passUnretained(self).toOpaque()) else {
            throw ProxyError("event_new failed for the \(name) reply thread")
        }
        wakeEvent = event
        let thread = Thread { [self] in self.serve() }
        thread.name = "switchyard-\(name)-replies"
        thread.stackSize = 1 << 21
        thread.start()
    }

    /// Whether `submit` would take another reply now. Only the control thread submits and
    /// delivers, so the answer holds until it submits.
    var hasRoom: Bool {
        condition.lock()
        defer { condition.unlock() }
        return roomLeft
    }

    /// Under the lock.
    private var roomLeft: Bool { !closed && waiting.count < Self.maxWaiting }

    /// Queues `work` for `request`; false when `maxWaiting` replies already wait (or closed).
    func submit(_ request: OpaquePointer, _ work: @escaping @Sendable () -> RenderedReply) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard roomLeft else { return false }
        nextID &+= 1
        waiting[nextID] = request
        queue.append((nextID, work))
        condition.signal()
        return true
    }

    /// Stops the thread after the reply it is writing; requests still waiting are dropped
    /// (evhttp frees them with their connections). Call on the control thread before the base is freed.
    func close() {
        condition.lock()
        let event = wakeEvent
        wakeEvent = nil
        queue.removeAll()
        finished.removeAll()
        waiting.removeAll()
        condition.broadcast()
        condition.unlock()
        if let event { event_free(event) }
    }

    /// On the control thread: sends every finished reply.
    fileprivate func deliver() {
        condition.lock()
        let ready = finished
        finished.removeAll()
        let requests = ready.map { waiting.removeValue(forKey: $0.id) }
        condition.unlock()
        for (request, done) in zip(requests, ready) {
            if let request { send(request, done.reply) }
        }
    }

    private func serve() {
        while true {
            condition.lock()
            while queue.isEmpty && !closed { condition.wait() }
            if closed {
                condition.unlock()
                return
            }
            let job = queue.removeFirst()
            condition.unlock()
            let reply = job.work()
            condition.lock()
            if let wakeEvent {
                finished.append((job.id, reply))
                event_active(wakeEvent, EV_READ, 0)
            }
            condition.unlock()
        }
    }
}

private let replyThreadWakeCallback: event_callback_fn = { _, _, context in
    guard let context else { return }
    Unmanaged<ReplyThread>.fromOpaque(context).takeUnretainedValue().deliver()
}
