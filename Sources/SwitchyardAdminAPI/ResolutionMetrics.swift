/// The metrics of servers given by DNS name (labels `pool` and `server`, the file's server name).
extension AdminMetric {
    /// Resolutions finished, by `result`: `success` or `failure`. A counter.
    public static let dnsResolutions = "switchyard_dns_resolutions_total"
    /// Addresses in use: those of the last good answer. A gauge.
    public static let dnsAddresses = "switchyard_dns_addresses"
    /// 1 while the last resolution failed (or none has succeeded yet) and the last good answer stays in use. A gauge.
    public static let dnsStale = "switchyard_dns_stale"
    /// Addresses that left the answer and still finish their requests. A gauge.
    public static let dnsDraining = "switchyard_dns_draining_addresses"
}
