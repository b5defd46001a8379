// Fuzz target: the DNS answer decoder on arbitrary bytes. The ID is taken from the input, so
// most inputs get past the ID check into the question, records and compression pointers;
// whatever is decoded must be consistent with the question.
import SwitchyardDNS

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))
    let id = count >= 2 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : 0
    for type in [DNSRecordType.a, .aaaa] {
        guard let query = try? DNSQuery(id: id, name: "app.test", type: type) else { return 0 }
        guard let answer = try? DNSAnswer(decoding: bytes, answering: query) else { continue }
        let size = type == .a ? 4 : 16
        precondition(answer.addresses.allSatisfy { $0.count == size }, "an address of the wrong size was accepted")
        precondition(!answer.isTruncated || answer.addresses.isEmpty, "records of a truncated answer were read")
    }
    return 0
}
