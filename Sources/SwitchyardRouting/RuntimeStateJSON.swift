import Foundation

/// The JSON of a `RuntimeState`, as `JSONEncoder` would write it (sorted keys, no spaces) and
/// `JSONDecoder` reads it, but with the servers written by hand: the state file is written on
/// every change before it is acknowledged, and with thousands of servers `JSONEncoder` spent
/// most of a change's time on them.
public enum RuntimeStateJSON {
    /// Appends `state` as a JSON object to `out`. Services and versions, which are few, go
    /// through `encoder`; it must write dates the way the reader expects.
    public static func append(_ state: RuntimeState, to out: inout [UInt8], encoder: JSONEncoder) throws {
        out.append(contentsOf: #"{"generation":"#.utf8)
        appendInteger(state.generation, to: &out)
        out.append(contentsOf: #","servers":{"#.utf8)
        var firstPool = true
        for pool in state.servers.keys.sorted() {
            guard let servers = state.servers[pool] else { continue }
            if !firstPool { out.append(UInt8(ascii: ",")) }
            firstPool = false
            appendString(pool, to: &out)
            out.append(contentsOf: ":{".utf8)
            var firstServer = true
            for name in servers.keys.sorted() {
                guard let server = servers[name] else { continue }
                if !firstServer { out.append(UInt8(ascii: ",")) }
                firstServer = false
                appendString(name, to: &out)
                // Keys in sorted order, as the encoder writes them; absent optionals are left out.
                out.append(contentsOf: ":{".utf8)
                if let address = server.address {
                    out.append(contentsOf: #""address":"#.utf8)
                    appendString(address, to: &out)
                    out.append(UInt8(ascii: ","))
                }
                if let removed = server.removed {
                    out.append(contentsOf: (removed ? #""removed":true,"# : #""removed":false,"#).utf8)
                }
                out.append(contentsOf: #""state":"#.utf8)
                appendString(server.state.rawValue, to: &out)
                out.append(contentsOf: #","weight":"#.utf8)
                appendInteger(server.weight, to: &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: #"},"services":"#.utf8)
        out.append(contentsOf: try encoder.encode(state.services))
        out.append(contentsOf: #","versions":"#.utf8)
        out.append(contentsOf: try encoder.encode(state.versions))
        out.append(UInt8(ascii: "}"))
    }

    /// A JSON string: quotes, backslashes and control characters escaped.
    public static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A whole number in decimal.
    public static func appendInteger<T: BinaryInteger>(_ value: T, to out: inout [UInt8]) {
        out.append(contentsOf: String(value).utf8)
    }
}
