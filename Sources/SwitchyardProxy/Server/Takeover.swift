import CLibevent
import Foundation
import Glibc
import SwitchyardConfig

/// Binary upgrade without a lost connection: a new process asks the running one for its
/// listening sockets over `takeover_socket` and receives them (SCM_RIGHTS). It serves on
/// the very same sockets, so no accept queue is closed. When it is ready it says so, and the
/// old process stops accepting and drains like on SIGTERM.
///
/// Protocol on the Unix socket: the new process sends `TAKEOVER\n`; the old one answers
/// with one message carrying the descriptors and, as text, one bound address per
/// descriptor (`127.0.0.1:8080\n`...); the new process later sends `READY\n`.
enum Takeover {
    struct Inherited {
        let connection: Int32
        let listeners: [(address: SocketAddress, fd: Int32)]
    }

    /// Connects to a running Switchyard and takes its listening sockets.
    static func receive(from path: String) throws -> Inherited {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw ProxyError("takeover_socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes); $0[bytes.count] = 0 }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ProxyError("--takeover: cannot reach the running Switchyard at takeover_socket \(path) (\(reason)); is it running with that takeover_socket?")
        }
        var timeout = Glibc.timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<Glibc.timeval>.size))
        _ = "TAKEOVER\n".withCString { send(fd, $0, 9, Int32(MSG_NOSIGNAL)) }
        var fds = [Int32](repeating: -1, count: 253)
        var count: Int32 = 0
        var text = [UInt8](repeating: 0, count: 16384)
        let received = text.withUnsafeMutableBytes { raw in
            fds.withUnsafeMutableBufferPointer { sy_recv_fds(fd, $0.baseAddress, 253, &count, raw.baseAddress, raw.count) }
        }
        guard received > 0 else {
            close(fd)
            throw ProxyError("--takeover: the running Switchyard sent no sockets")
        }
        let lines = String(decoding: text[0..<received], as: UTF8.self).split(separator: "\n")
        guard lines.count == Int(count) else {
            for i in 0..<Int(count) { close(fds[i]) }
            close(fd)
            throw ProxyError("--takeover: received \(count) sockets but \(lines.count) addresses")
        }
        var listeners: [(SocketAddress, Int32)] = []
        for (i, line) in lines.enumerated() {
            guard let address = SocketAddress(parsing: String(line), allowsAnyPort: true) else { continue }
            listeners.append((address, fds[i]))
        }
        return Inherited(connection: fd, listeners: listeners)
    }

    /// Tells the old process that the new one serves; it then drains and exits.
    static func announceReady(_ inherited: Inherited) {
        _ = "READY\n".withCString { send(inherited.connection, $0, 6, Int32(MSG_NOSIGNAL)) }
        close(inherited.connection)
    }
}

/// The old process's side: hands its listening sockets to a new process.
final class TakeoverServer {
    private let path: String
    private let fd: Int32
    private var event: OpaquePointer?
    private let listeners: [(address: SocketAddress, fd: Int32)]
    private let base: OpaquePointer
    /// Called once a new process has announced that it serves.
    private let onHandedOver: () -> Void
    private var pending: [Int32: OpaquePointer] = [:]
    private var inode: ino_t = 0

    init(path: String, base: OpaquePointer, listeners: [(address: SocketAddress, fd: Int32)], onHandedOver: @escaping () -> Void) throws {
        self.path = path
        self.base = base
        self.listeners = listeners
        self.onHandedOver = onHandedOver
        unlink(path) // a takeover replaces the previous process's socket file
        fd = try AdminServer.listenUnix(path: path)
        inode = AdminServer.inode(path)
        event = event_new(base, fd, EventFlags.read | EventFlags.persist, takeoverAcceptCallback, Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    fileprivate func accept() {
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { return }
        // Only the socket's owner could connect (mode 0600); the exchange is a few bytes.
        var timeout = Glibc.timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<Glibc.timeval>.size))
        var request = [UInt8](repeating: 0, count: 16)
        let n = request.withUnsafeMutableBytes { recv(client, $0.baseAddress, 9, Int32(MSG_WAITALL)) }
        guard n == 9, String(decoding: request[0..<9], as: UTF8.self) == "TAKEOVER\n" else { Glibc.close(client); return }
        let text = listeners.map { $0.address.description + "\n" }.joined()
        let fds = listeners.map(\.fd)
        let sent = Array(text.utf8).withUnsafeBytes { raw in
            fds.withUnsafeBufferPointer { sy_send_fds(client, $0.baseAddress, Int32(fds.count), raw.baseAddress, raw.count) }
        }
        guard sent > 0 else { Glibc.close(client); return }
        logToStandardError("switchyard: takeover: handed \(fds.count) listening socket(s) to a new process; waiting for it to be ready")
        let wait = event_new(base, client, EventFlags.read, takeoverReadyCallback, Unmanaged.passUnretained(self).toOpaque())!
        pending[client] = wait
        var tv = timeval(milliseconds: 60_000)
        event_add(wait, &tv)
    }

    fileprivate func readyOrNot(_ client: Int32) {
        var answer = [UInt8](repeating: 0, count: 16)
        let n = answer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if let wait = pending.removeValue(forKey: client) { event_free(wait) }
        Glibc.close(client)
        if n >= 6 && String(decoding: answer[0..<6], as: UTF8.self) == "READY\n" {
            logToStandardError("switchyard: takeover: the new process serves; draining and exiting")
            onHandedOver()
        } else {
            logToStandardError("switchyard: takeover: the new process did not become ready; still serving", level: .warning)
        }
    }

    func close() {
        if let event { event_free(event) }
        event = nil
        for (client, wait) in pending { event_free(wait); Glibc.close(client) }
        pending.removeAll()
        Glibc.close(fd)
        if AdminServer.inode(path) == inode { unlink(path) }
    }
}

private let takeoverAcceptCallback: event_callback_fn = { _, _, context in
    Unmanaged<TakeoverServer>.fromOpaque(context!).takeUnretainedValue().accept()
}

private let takeoverReadyCallback: event_callback_fn = { fd, _, context in
    Unmanaged<TakeoverServer>.fromOpaque(context!).takeUnretainedValue().readyOrNot(fd)
}

/// Tells systemd (Type=notify) about the main process: readiness, and after a takeover the
/// new main PID, so the unit follows the upgrade. Does nothing outside systemd.
func notifySystemd(_ state: String) {
    guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 } // abstract namespace
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
    _ = state.withCString { text in
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, text, strlen(text), 0, $0, length) }
        }
    }
}
