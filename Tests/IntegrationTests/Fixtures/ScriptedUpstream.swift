import Foundation
import Glibc
import Testing

/// An upstream whose every connection is handled by a script: tests that need a peer
/// misbehaving in one precise way (interim floods, a close after reading a request).
final class ScriptedUpstream: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    var address: String { "127.0.0.1:\(port)" }
    private let lock = NSLock()
    private var connections = 0
    private var stopped = false

    /// `handle` runs on its own thread for each connection: (socket, connection number from 1).
    init(_ handle: @escaping @Sendable (Int32, Int) -> Void) {
        (fd, port) = loopbackListener()
        let thread = Thread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                let number: Int = lock.withLock { connections += 1; return connections }
                Thread.detachNewThread { handle(client, number); close(client) }
            }
        }
        thread.start()
    }

    var connectionCount: Int { lock.withLock { connections } }

    func stop() {
        lock.withLock { stopped = true }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    deinit { if !stopped { stop() } }

    /// Reads one request head (up to the blank line) and returns it; nil at end of stream.
    static func readHead(_ fd: Int32) -> String? {
        var bytes: [UInt8] = []
        var one: UInt8 = 0
        while bytes.count < 65536 {
            let n = recv(fd, &one, 1, 0)
            if n <= 0 { return nil }
            bytes.append(one)
            if bytes.count >= 4 && bytes.suffix(4) == [13, 10, 13, 10] { return String(decoding: bytes, as: UTF8.self) }
        }
        return nil
    }

    static func write(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }
}

/// A value shared between test threads.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func mutate(_ change: (inout Value) -> Void) { lock.withLock { change(&stored) } }
}
