import CLibevent

/// The read and write events of one non-blocking socket, shared by client and upstream
/// connections. Interest is added or removed only when it changes, so the common path
/// costs no `epoll_ctl`; once freed, nothing is added again.
///
/// The write event is made the first time the socket must wait to be writable (a slow
/// reader, a connect, a TLS handshake): most keep-alive connections never need one, and an
/// event is 128 bytes plus its allocation.
struct SocketEvents {
    private var read: OpaquePointer?
    private var write: OpaquePointer?
    private var onWrite: event_callback_fn?
    private(set) var reading = false
    private(set) var writing = false

    /// A persistent read event on `fd` now, and a write event when first wanted, calling
    /// `onRead` and `onWrite` with `context`.
    init(base: OpaquePointer, fd: Int32, onRead: event_callback_fn, onWrite: event_callback_fn, context: UnsafeMutableRawPointer) {
        read = event_new(base, fd, EventFlags.read | EventFlags.persist, onRead, context)
        self.onWrite = onWrite
    }

    init() {}

    @inline(__always)
    mutating func wantRead(_ on: Bool) {
        guard on != reading, let read else { return }
        reading = on
        if on { event_add(read, nil) } else { event_del(read) }
    }

    /// Runs the read callback on the loop's next turn although the socket announced nothing:
    /// TLS may hold records it read ahead, which epoll will never announce.
    func announceRead() {
        guard reading, let read else { return }
        event_active(read, Int32(EventFlags.read), 0)
    }

    @inline(__always)
    mutating func wantWrite(_ on: Bool) {
        guard on != writing, let read else { return }
        if write == nil {
            guard on, let onWrite else { return }
            write = event_new(event_get_base(read), event_get_fd(read), EventFlags.write | EventFlags.persist, onWrite, event_get_callback_arg(read))
        }
        guard let write else { return }
        writing = on
        if on { event_add(write, nil) } else { event_del(write) }
    }

    /// Frees both events (when the connection closes).
    mutating func free() {
        if let read { event_free(read) }
        if let write { event_free(write) }
        read = nil
        write = nil
        reading = false
        writing = false
    }
}
