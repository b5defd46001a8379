/// The metrics about the process itself that `GET /metrics` reports (on the admin API and on
/// the observability listener alike). docs/observability.md lists each with its type and labels.
extension AdminMetric {
    /// 1, labelled `version` (the release of the binary). A gauge.
    public static let buildInfo = "switchyard_build_info"
    /// CPU time the process used, user and system, in seconds. A counter.
    public static let processCPUSeconds = "process_cpu_seconds_total"
    /// Resident memory in bytes. A gauge.
    public static let processResidentMemory = "process_resident_memory_bytes"
    /// Virtual memory in bytes. A gauge.
    public static let processVirtualMemory = "process_virtual_memory_bytes"
    /// Open file descriptors. A gauge.
    public static let processOpenFDs = "process_open_fds"
    /// The open-file limit (the soft limit). A gauge.
    public static let processMaxFDs = "process_max_fds"
    /// When the process started, in seconds since the Unix epoch. A gauge.
    public static let processStartTime = "process_start_time_seconds"
    /// Open client connections, by `worker` (0, 1, ...). A gauge.
    public static let clientConnections = "switchyard_client_connections"
    /// Access-log lines dropped because the writer fell more than 64 MiB behind. A counter.
    public static let accessLogDroppedLines = "switchyard_access_log_dropped_lines_total"
    /// Writes to the access log that failed (the rest of that batch is lost). A counter.
    public static let accessLogWriteErrors = "switchyard_access_log_write_errors_total"
    /// Configuration reloads (SIGHUP or `POST /v1/reload`), by `outcome`: `success` or `failure`. A counter.
    public static let reloads = "switchyard_reloads_total"
    /// When the last reload was tried, in seconds since the Unix epoch (0 before the first). A gauge.
    public static let lastReloadTime = "switchyard_last_reload_timestamp_seconds"
    /// When the last reload succeeded, in seconds since the Unix epoch (0 before the first). A gauge.
    public static let lastReloadSuccessTime = "switchyard_last_reload_success_timestamp_seconds"
    /// Whether the last reload succeeded (1) or failed (0); 1 before any reload. A gauge.
    public static let lastReloadSuccess = "switchyard_last_reload_success"
    /// Resolutions of every server name together, by `outcome`: `success` (an answer with
    /// addresses) or `failure` (no answer, an error, or an answer without an address). A counter.
    public static let dnsOutcomes = "switchyard_dns_resolution_outcomes_total"
    /// Whether the proxy takes traffic (1) or is starting or draining (0): what `/ready` answers. A gauge.
    public static let ready = "switchyard_ready"
    /// When each served certificate expires (its notAfter), in seconds since the Unix epoch,
    /// labelled `listener` ("listeners 0.0.0.0:443" or "admin") and `file`. A gauge.
    public static let certificateExpiry = "switchyard_tls_certificate_expiry_timestamp_seconds"
    /// When each deploy lock held now was taken, in seconds since the Unix epoch, labelled
    /// `service` (empty for the proxy-wide lock) and `owner`. A gauge; no series while unlocked.
    public static let lockSince = "switchyard_lock_since_timestamp_seconds"
    /// When each deploy lock held now expires unless renewed, labelled like `lockSince`. A gauge.
    public static let lockExpiry = "switchyard_lock_expiry_timestamp_seconds"
}
