import Foundation
import Glibc
import Testing

/// The figures of a wrk report that tests judge.
struct WrkReport {
    let text: String
    var requests = 0
    /// Responses outside 2xx/3xx.
    var non2xx = 0
    var connectErrors = 0, readErrors = 0, writeErrors = 0, timeouts = 0

    init(_ text: String) {
        self.text = text
        for line in text.split(separator: "\n") {
            if line.contains("requests in") { requests = Int(line.split(separator: " ").first ?? "") ?? 0 }
            if line.contains("Non-2xx") { non2xx = Int(line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0 }
            if line.contains("Socket errors") {
                for part in line.split(separator: ":", maxSplits: 1).last?.split(separator: ",") ?? [] {
                    let words = part.split(separator: " ")
                    guard words.count == 2, let n = Int(words[1]) else { continue }
                    switch words[0] {
                    case "connect": connectErrors = n
                    case "read": readErrors = n
                    case "write": writeErrors = n
                    default: timeouts = n
                    }
                }
            }
        }
    }

    /// Requests that failed: non-2xx/3xx answers, and connections that broke while a request
    /// was on them. Connect errors are not requests: the machine runs other suites in parallel,
    /// and a reconnect can meet a transient local limit.
    var failedRequests: Int { non2xx + readErrors + writeErrors + timeouts }
}
