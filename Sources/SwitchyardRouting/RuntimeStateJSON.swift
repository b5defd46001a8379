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
        JSONBytes.appendInteger(state.generation, to: &out)
        out.append(contentsOf: #","servers":{"#.utf8)
        var firstPool = true
        for pool in state.servers.keys.sorted() {
            guard let servers = state.servers[pool] else { continue }
            if !firstPool { out.append(UInt8(ascii: ",")) }
            firstPool = false
            JSONBytes.appendString(pool, to: &out)
            out.append(contentsOf: ":{".utf8)
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
        out.append(contentsOf: #"},"services":"#.utf8)
        out.append(contentsOf: try encoder.encode(state.services))
        out.append(contentsOf: #","versions":"#.utf8)
        out.append(contentsOf: try encoder.encode(state.versions))
        out.append(UInt8(ascii: "}"))
    }
}
