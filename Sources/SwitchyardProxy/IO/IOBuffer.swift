/// A fixed-size byte buffer with read and write positions. Buffers never grow: that is
/// what keeps memory per connection bounded whatever the peers send.
final class IOBuffer {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    var readIndex = 0
    var writeIndex = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    @inline(__always) var readable: Int { writeIndex - readIndex }
    @inline(__always) var readPointer: UnsafeMutablePointer<UInt8> { base + readIndex }
    @inline(__always) var writePointer: UnsafeMutablePointer<UInt8> { base + writeIndex }
    @inline(__always) var writable: Int { capacity - writeIndex }
    @inline(__always) var isEmpty: Bool { readIndex == writeIndex }

    @inline(__always) func reset() { readIndex = 0; writeIndex = 0 }

    /// Moves unread bytes to the front so that `writable` is as large as it can be.
    func compact() {
        if readIndex == 0 { return }
        let n = readable
        if n > 0 { base.update(from: base + readIndex, count: n) }
        readIndex = 0
        writeIndex = n
    }

    @inline(__always) func consume(_ n: Int) {
        readIndex += n
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }
}

/// Per-worker free list of buffers, so that the request path does not call malloc and
/// idle connections hold no buffer at all.
final class BufferPool {
    let bufferSize: Int
    private var free: [IOBuffer] = []
    private let maxFree: Int
    private(set) var inUse = 0

    init(bufferSize: Int, maxFree: Int = 1024) {
        self.bufferSize = bufferSize
        self.maxFree = maxFree
        free.reserveCapacity(maxFree)
    }

    @inline(__always) func take() -> IOBuffer {
        inUse += 1
        if let b = free.popLast() { return b }
        return IOBuffer(capacity: bufferSize)
    }

    @inline(__always) func give(_ buffer: IOBuffer) {
        inUse -= 1
        buffer.reset()
        if free.count < maxFree { free.append(buffer) }
    }
}

/// Fixed-size blocks of a worker's exchanges' scratch text (`ClientConnection.Scratch`),
/// kept for reuse like buffers, so that only connections in an exchange hold one.
final class ScratchPool {
    let blockSize: Int
    private var free: [UnsafeMutablePointer<UInt8>] = []
    private let maxFree: Int

    init(blockSize: Int, maxFree: Int = 1024) {
        self.blockSize = blockSize
        self.maxFree = maxFree
        free.reserveCapacity(maxFree)
    }

    deinit { for block in free { block.deallocate() } }

    @inline(__always) func take() -> UnsafeMutablePointer<UInt8> {
        free.popLast() ?? .allocate(capacity: blockSize)
    }

    @inline(__always) func give(_ block: UnsafeMutablePointer<UInt8>) {
        if free.count < maxFree { free.append(block) } else { block.deallocate() }
    }
}
