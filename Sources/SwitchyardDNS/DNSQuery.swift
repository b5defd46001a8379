/// The record types the proxy asks for, and the one it follows.
public enum DNSRecordType: UInt16, Sendable, CaseIterable {
    /// An IPv4 address.
    case a = 1
    /// An alias: the answer continues under another name.
    case cname = 5
    /// An IPv6 address.
    case aaaa = 28
}

/// Why a name cannot be put into a DNS question.
public enum DNSNameError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    /// A label is empty (two dots in a row, or a leading dot).
    case emptyLabel
    /// A label is longer than 63 bytes.
    case labelTooLong
    /// The whole name is longer than 255 bytes on the wire.
    case nameTooLong

    public var description: String {
        switch self {
        case .empty: return "the name is empty"
        case .emptyLabel: return "the name has an empty label (two dots in a row, or a leading dot)"
        case .labelTooLong: return "a label of the name is longer than 63 characters"
        case .nameTooLong: return "the name is longer than 253 characters"
        }
    }
}

/// A standard query (RFC 1035 section 4.1) for one name and record type, with recursion
/// desired: what a stub resolver sends to its recursive resolver.
public struct DNSQuery: Sendable, Equatable {
    /// Matches the answer to the question; chosen at random by the sender.
    public let id: UInt16
    /// Lowercased, without a trailing dot.
    public let name: String
    public let type: DNSRecordType

    /// The wire form of each label (lowercased).
    let labels: [[UInt8]]

    /// - Throws: when `name` cannot be a DNS name (see `DNSNameError`). A trailing dot (an
    ///   absolute name) is accepted and dropped.
    public init(id: UInt16, name: String, type: DNSRecordType) throws(DNSNameError) {
        self.id = id
        self.type = type
        labels = try Self.labels(of: name)
        self.name = String(decoding: Array(labels.joined(separator: [UInt8(ascii: ".")])), as: UTF8.self)
    }

    /// The labels of `name`, lowercased (ASCII), checked against the wire's limits.
    static func labels(of name: String) throws(DNSNameError) -> [[UInt8]] {
        var bytes = Array(name.utf8)
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        guard !bytes.isEmpty else { throw .empty }
        var labels: [[UInt8]] = []
        var wireLength = 1 // the root label's zero byte
        for label in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard !label.isEmpty else { throw .emptyLabel }
            guard label.count <= 63 else { throw .labelTooLong }
            wireLength += 1 + label.count
            guard wireLength <= 255 else { throw .nameTooLong }
            labels.append(label.map(DNSWire.lowercased))
        }
        return labels
    }

    /// The message: a 12-byte header (recursion desired, one question), then the question:
    /// the name as length-prefixed labels ending with the root's zero byte, the type and class IN.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(12 + name.utf8.count + 6)
        DNSWire.append16(id, to: &out)
        DNSWire.append16(0x0100, to: &out) // QR=0 (query), opcode 0, RD=1
        DNSWire.append16(1, to: &out) // QDCOUNT
        DNSWire.append16(0, to: &out) // ANCOUNT
        DNSWire.append16(0, to: &out) // NSCOUNT
        DNSWire.append16(0, to: &out) // ARCOUNT
        for label in labels {
            out.append(UInt8(label.count)) // at most 63, checked in init
            out += label
        }
        out.append(0)
        DNSWire.append16(type.rawValue, to: &out)
        DNSWire.append16(DNSWire.classIN, to: &out)
        return out
    }
}

/// Byte-level helpers shared by the encoder and the decoder.
enum DNSWire {
    static let classIN: UInt16 = 1

    static func append16(_ value: UInt16, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: value >> 8))
        out.append(UInt8(truncatingIfNeeded: value))
    }

    /// DNS compares names without regard to ASCII case (RFC 4343); other bytes as they are.
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }
}
