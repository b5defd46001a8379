/// The RCODE of a response (RFC 1035 section 4.1.1, RFC 6895).
public struct DNSResponseCode: RawRepresentable, Sendable, Equatable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let noError = DNSResponseCode(rawValue: 0)
    public static let formatError = DNSResponseCode(rawValue: 1)
    public static let serverFailure = DNSResponseCode(rawValue: 2)
    /// NXDOMAIN: the name does not exist.
    public static let nameError = DNSResponseCode(rawValue: 3)
    public static let notImplemented = DNSResponseCode(rawValue: 4)
    public static let refused = DNSResponseCode(rawValue: 5)

    /// The mnemonic operators know from dig: NOERROR, SERVFAIL, NXDOMAIN...
    public var description: String {
        switch rawValue {
        case 0: return "NOERROR"
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        default: return "RCODE \(rawValue)"
        }
    }
}

/// Why a message is not a usable answer to the question asked.
public enum DNSDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The message ends inside its header, a name or a record.
    case truncatedMessage
    /// The message is a query, or another operation than a standard query.
    case notAResponse
    /// The ID is not the question's: an answer to another query (or a forgery), to be ignored.
    case unexpectedID
    /// The question section is not the question asked: to be ignored like a wrong ID.
    case unexpectedQuestion
    /// A name uses an unknown label type, a compression pointer that does not point back
    /// to an earlier part of the message, or is longer than 255 bytes.
    case badName
    /// An address record whose data is not 4 (A) or 16 (AAAA) bytes long.
    case badAddressRecord

    public var description: String {
        switch self {
        case .truncatedMessage: return "the answer ends too early"
        case .notAResponse: return "the message is not an answer to a standard query"
        case .unexpectedID: return "the answer's ID is not the question's"
        case .unexpectedQuestion: return "the answer is for another question"
        case .badName: return "the answer holds a malformed name"
        case .badAddressRecord: return "the answer holds an address record of the wrong length"
        }
    }

    /// Whether the message may simply belong to someone else (keep waiting for ours).
    public var isForAnotherQuestion: Bool { self == .unexpectedID || self == .unexpectedQuestion }
}

/// What a response says about the question asked: its response code and the addresses of
/// the name, found by following aliases (CNAME records) inside the answer section.
///
/// Decoding never traps, whatever the bytes: every read is bounds-checked, compression
/// pointers must point strictly backwards (so following them always ends), alias chains are
/// followed at most `maxAliases` times, and the work is bounded by the message's length.
public struct DNSAnswer: Sendable, Equatable {
    public var responseCode: DNSResponseCode
    /// TC: the answer did not fit in a UDP datagram; ask again over TCP. The records of a
    /// truncated answer are not read.
    public var isTruncated: Bool
    /// The name's addresses in the order the answer gives them: 4 bytes each for A, 16 for AAAA.
    public var addresses: [[UInt8]]
    /// The shortest time to live of the records used (aliases included); nil without records.
    public var ttl: UInt32?

    public init(responseCode: DNSResponseCode, isTruncated: Bool = false, addresses: [[UInt8]] = [], ttl: UInt32? = nil) {
        self.responseCode = responseCode
        self.isTruncated = isTruncated
        self.addresses = addresses
        self.ttl = ttl
    }

    /// Longer alias chains than this are not followed (resolvers flatten chains anyway).
    public static let maxAliases = 16

    /// Decodes `message` as the answer to `query`.
    public init(decoding message: [UInt8], answering query: DNSQuery) throws(DNSDecodeError) {
        let reader = DNSReader(message)
        guard message.count >= 12 else { throw .truncatedMessage }
        let id = try reader.read16(at: 0)
        let flags = try reader.read16(at: 2)
        let questions = try reader.read16(at: 4)
        let answers = try reader.read16(at: 6)
        guard id == query.id else { throw .unexpectedID }
        guard flags & 0x8000 != 0, (flags >> 11) & 0x0F == 0 else { throw .notAResponse }
        responseCode = DNSResponseCode(rawValue: UInt8(flags & 0x000F))
        isTruncated = flags & 0x0200 != 0
        addresses = []
        ttl = nil
        // Some servers leave the question out of an error (FORMERR, NOTIMP): the ID matched.
        if questions == 0 && responseCode != .noError { return }
        guard questions == 1 else { throw .unexpectedQuestion }
        let (asked, afterName) = try reader.name(at: 12)
        guard asked == query.labels, try reader.read16(at: afterName) == query.type.rawValue,
              try reader.read16(at: afterName + 2) == DNSWire.classIN else { throw .unexpectedQuestion }
        if isTruncated { return }

        // The answer section: every record of class IN, by owner name.
        var records: [(owner: [[UInt8]], type: UInt16, ttl: UInt32, data: Range<Int>)] = []
        var offset = afterName + 4
        for _ in 0..<answers {
            let (owner, afterOwner) = try reader.name(at: offset)
            let type = try reader.read16(at: afterOwner)
            let recordClass = try reader.read16(at: afterOwner + 2)
            let recordTTL = try reader.read32(at: afterOwner + 4)
            let length = Int(try reader.read16(at: afterOwner + 8))
            let start = afterOwner + 10
            guard start + length <= message.count else { throw .truncatedMessage }
            if recordClass == DNSWire.classIN { records.append((owner, type, recordTTL, start..<start + length)) }
            offset = start + length
        }

        var target = query.labels
        var shortest: UInt32? = nil
        for _ in 0...Self.maxAliases {
            let found = records.filter { $0.owner == target && $0.type == query.type.rawValue }
            if !found.isEmpty {
                let size = query.type == .aaaa ? 16 : 4
                for record in found {
                    guard record.data.count == size else { throw .badAddressRecord }
                    addresses.append(Array(message[record.data]))
                    shortest = min(shortest ?? record.ttl, record.ttl)
                }
                break
            }
            guard let alias = records.first(where: { $0.owner == target && $0.type == DNSRecordType.cname.rawValue }) else { break }
            // The alias's own bytes must hold its name (a pointer may finish it elsewhere).
            guard !alias.data.isEmpty else { throw .badName }
            let (next, end) = try reader.name(at: alias.data.lowerBound)
            guard end <= alias.data.upperBound else { throw .badName }
            target = next
            shortest = min(shortest ?? alias.ttl, alias.ttl)
        }
        ttl = addresses.isEmpty ? nil : shortest
    }
}

/// Bounds-checked reads from a message.
struct DNSReader {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read16(at offset: Int) throws(DNSDecodeError) -> UInt16 {
        guard offset >= 0, offset + 2 <= bytes.count else { throw .truncatedMessage }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    func read32(at offset: Int) throws(DNSDecodeError) -> UInt32 {
        UInt32(try read16(at: offset)) << 16 | UInt32(try read16(at: offset + 2))
    }

    /// The name starting at `start`: its labels (lowercased) and the offset just past it in
    /// the message (past the first compression pointer, when it has one).
    ///
    /// A pointer must lead strictly before the beginning of the labels read since the last
    /// jump: each jump goes further back, so a message cannot make this loop.
    func name(at start: Int) throws(DNSDecodeError) -> (labels: [[UInt8]], next: Int) {
        var labels: [[UInt8]] = []
        var position = start
        var segmentStart = start
        var next: Int? = nil
        var wireLength = 1 // the root label
        while true {
            guard position >= 0, position < bytes.count else { throw .truncatedMessage }
            let length = Int(bytes[position])
            switch length & 0xC0 {
            case 0x00:
                if length == 0 { return (labels, next ?? position + 1) }
                let end = position + 1 + length
                guard end <= bytes.count else { throw .truncatedMessage }
                wireLength += 1 + length
                guard wireLength <= 255 else { throw .badName }
                labels.append(bytes[(position + 1)..<end].map(DNSWire.lowercased))
                position = end
            case 0xC0:
                guard position + 1 < bytes.count else { throw .truncatedMessage }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < segmentStart else { throw .badName }
                if next == nil { next = position + 2 }
                position = target
                segmentStart = target
            default:
                throw .badName // 0x40 and 0x80: extended label types, never used in answers
            }
        }
    }
}
