/// An admin request that cannot be carried out: the HTTP status, a short error and a detail
/// that tells the operator what to do.
public struct AdminError: Error, Sendable, Equatable {
    public let status: Int
    public let error: String
    public let detail: String

    public init(_ status: Int, _ error: String, _ detail: String) {
        self.status = status
        self.error = error
        self.detail = detail
    }
}
