import Foundation

/// The JSON of a `RuntimeState`, as `JSONEncoder` would write it (sorted keys, no spaces) and
/// `JSONDecoder` reads it, but with the servers written by hand, and each pool's servers kept
/// while they stay the same: the state file is written on every change before it is
/// acknowledged, a change touches one pool of thousands, and writing all of them again was
/// most of a change's time.
public enum RuntimeStateJSON {
    /// What `append` keeps between writes of one state (one per state written repeatedly).
    /// Only the servers are kept: their names and addresses are checked ASCII, so equal values
    /// have equal bytes. Services are not: a rule's value may be any text, and two strings
    /// Swift calls equal (canonically equivalent) may differ in their bytes.
    public final class Kept {
        let pools = EncodedValues<[String: RuntimeState.Server]>()
        public init() {}
    }

    /// Appends `state` as a JSON object to `out`. Services and versions go through `encoder`
    /// (it must write dates the way the reader expects).
    public static func append(_ state: RuntimeState, to out: inout [UInt8], encoder: JSONEncoder, kept: Kept = Kept()) throws {
        out.append(contentsOf: #"{"generation":"#.utf8)
        JSONBytes.appendInteger(state.generation, to: &out)
        out.append(contentsOf: #","servers":"#.utf8)
        kept.pools.appendObject(state.servers, to: &out) { servers, out in appendServers(servers, to: &out) }
        out.append(contentsOf: #","services":"#.utf8)
        out.append(contentsOf: try encoder.encode(state.services))
        out.append(contentsOf: #","versions":"#.utf8)
        out.append(contentsOf: try encoder.encode(state.versions))
        out.append(UInt8(ascii: "}"))
    }

    /// One pool's servers by name.
    static func appendServers(_ servers: [String: RuntimeState.Server], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var firstServer = true
        for name in servers.keys.sorted() {
            guard let server = servers[name] else { continue }
            if !firstServer { out.append(UInt8(ascii: ",")) }
            firstServer = false
            JSONBytes.appendString(name, to: &out)
            // Keys in sorted order, as the encoder writes them; absent optionals are left out.
            out.append(contentsOf: ":{".utf8)
            if let address = server.address {
                out.append(contentsOf: #""address":"#.utf8)
                JSONBytes.appendString(address, to: &out)
                out.append(UInt8(ascii: ","))
            }
            if let removed = server.removed {
                out.append(contentsOf: (removed ? #""removed":true,"# : #""removed":false,"#).utf8)
            }
            out.append(contentsOf: #""state":"#.utf8)
            JSONBytes.appendString(server.state.rawValue, to: &out)
            out.append(contentsOf: #","weight":"#.utf8)
            JSONBytes.appendInteger(server.weight, to: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
    }
}

/// The JSON of the values of a dictionary, kept by key while each value stays the same. Only
/// for values whose equality is byte equality (no text beyond ASCII): Swift's `==` on strings
/// is canonical equivalence, and kept bytes would then outlive a change of bytes.
public final class EncodedValues<Value: Equatable> {
    private var entries: [String: (value: Value, bytes: [UInt8])] = [:]

    public init() {}

    /// Appends `values` as a JSON object with sorted keys (as `JSONEncoder` with `.sortedKeys`
    /// orders them), each value written by `encode` unless the same value was written under
    /// its key last time. Keys no longer present are forgotten.
    public func appendObject(_ values: [String: Value], to out: inout [UInt8],
                             encode: (Value, inout [UInt8]) throws -> Void) rethrows {
        var kept: [String: (value: Value, bytes: [UInt8])] = [:]
        kept.reserveCapacity(values.count)
        out.append(UInt8(ascii: "{"))
        var first = true
        for key in values.keys.sorted() {
            guard let value = values[key] else { continue }
            var bytes: [UInt8]
            if let entry = entries[key], entry.value == value {
                bytes = entry.bytes
            } else {
                bytes = []
                try encode(value, &bytes)
            }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONBytes.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: bytes)
            kept[key] = (value, bytes)
        }
        out.append(UInt8(ascii: "}"))
        entries = kept
    }
}
