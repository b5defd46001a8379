import SwitchyardAdminAPI

extension CtlStatus {
    /// The servers given by DNS name, when there are any: what each resolves to and how the
    /// last resolution went (lines of the status view; none without such servers).
    static func names(_ s: AdminStatus) -> [String] {
        let rows = s.pools.sorted { $0.key < $1.key }.flatMap { pool, value in
            (value.names ?? [:]).sorted { $0.key < $1.key }.map { (pool: pool, server: $0.key, name: $0.value) }
        }
        guard !rows.isEmpty else { return [] }
        var lines = ["", "NAME                   ADDRESSES                          LAST RESOLUTION                 RESULT"]
        for row in rows {
            var addresses = row.name.addresses.joined(separator: ", ")
            if addresses.isEmpty { addresses = "-" }
            if let draining = row.name.draining, !draining.isEmpty { addresses += " (draining " + draining.joined(separator: ", ") + ")" }
            let keeping = row.name.addresses.isEmpty ? "" : "; keeping the last good answer"
            let result = row.name.lastError.map { "FAILED: \($0)\(keeping)" } ?? (row.name.lastSuccess == nil ? "not resolved yet" : "ok")
            lines.append(column("\(row.pool)/\(row.server)", width: 22) + " " + column(addresses, width: 34) + " "
                         + column(row.name.lastResolution ?? "-", width: 31) + " " + result)
        }
        return lines
    }
}
