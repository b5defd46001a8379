import CLibevent
import Glibc

/// A fixed-size byte buffer with read and write positions. Buffers never grow: that is
/// what keeps memory per connection bounded whatever the peers send.
final class IOBuffer {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    var readIndex = 0
    var writeIndex = 0

    /// Page-aligned, so that a pool can give an unused buffer's pages back (`releasePages`).
    init(capacity: Int) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: IOBuffer.pageSize)
            .bindMemory(to: UInt8.self, capacity: capacity)
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }

    static let pageSize = 4096

    /// Gives the buffer's whole pages back to the kernel; its contents are lost, and the next
    /// write to a page faults a fresh zeroed one in.
    func releasePages() {
        let length = capacity / Self.pageSize * Self.pageSize
        if length > 0 { _ = madvise(UnsafeMutableRawPointer(base), length, Int32(MADV_DONTNEED)) }
    }

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
///
/// A burst leaves many free buffers behind. Those that stay unused for a whole trim interval
/// beyond the `warmKept` most recently used give their pages back (`trim`), so memory follows
/// the load down instead of staying at its peak; they are used again last.
final class BufferPool {
    let bufferSize: Int
    /// Free buffers with their pages, the most recently used last.
    private var warm: [IOBuffer] = []
    /// Free buffers whose pages were given back.
    private var cold: [IOBuffer] = []
    private let maxFree: Int
    private(set) var inUse = 0
    /// The fewest warm buffers since the last trim: that many went unused the whole time.
    private var fewestWarm = 0
    /// How many warm buffers a trim keeps, so a steady light load reuses buffers whose pages are in memory.
    static let warmKept = 64
    /// How often to trim while there is more than `warmKept` warm (the worker's timer).
    static let trimIntervalMs: Int64 = 1000
    /// The worker's one-shot trim timer (calls `trim`), armed while a trim may have something to do.
    var trimTimer: OpaquePointer?
    private var trimArmed = false

    init(bufferSize: Int, maxFree: Int = 1024) {
        self.bufferSize = bufferSize
        self.maxFree = maxFree
        warm.reserveCapacity(maxFree)
    }

    @inline(__always) func take() -> IOBuffer {
        inUse += 1
        if let b = warm.popLast() {
            if warm.count < fewestWarm { fewestWarm = warm.count }
            return b
        }
        if let b = cold.popLast() { return b }
        return IOBuffer(capacity: bufferSize)
    }

    @inline(__always) func give(_ buffer: IOBuffer) {
        inUse -= 1
        buffer.reset()
        guard warm.count + cold.count < maxFree else { return }
        warm.append(buffer)
        if warm.count > Self.warmKept && !trimArmed { armTrim() }
    }

    /// Gives back the pages of the warm buffers beyond `warmKept` that nobody took since the
    /// last trim (the least recently used), and stops the timer when nothing is left to trim.
    func trim() {
        let unused = min(fewestWarm, warm.count) - Self.warmKept
        if unused > 0 {
            for buffer in warm[0..<unused] { buffer.releasePages() }
            cold.append(contentsOf: warm[0..<unused])
            warm.removeFirst(unused)
        }
        fewestWarm = warm.count
        trimArmed = false
        if warm.count > Self.warmKept { armTrim() }
    }

    private func armTrim() {
        guard let trimTimer else { return }
        var tv = timeval(milliseconds: Self.trimIntervalMs)
        event_add(trimTimer, &tv)
        trimArmed = true
    }
}
