import Testing
import SwitchyardHTTP
@testable import SwitchyardRouting

@Suite("Retry policy")
struct RetryPolicyTests {
    func attempt(_ method: HTTPMethod, reused: Bool = true, resent: Bool = false, wrote: Bool = true, committed: Bool = false,
                 complete: Bool = true, partial: Bool = false, attempts: Int = 1, retries: Int = 2, inTime: Bool = true) -> RetryPolicy.Attempt {
        RetryPolicy.Attempt(method: method, attempts: attempts, retries: retries, withinDeadline: inTime, reusedConnection: reused,
                            alreadyResent: resent, wroteRequest: wrote, requestBytesCommitted: committed, requestComplete: complete,
                            partialResponse: partial)
    }

    @Test func aWrittenNonIdempotentRequestIsNeverSentAgain() {
        for method in [HTTPMethod.post, .patch, .other] {
            #expect(RetryPolicy.afterConnectionLost(attempt(method)) == .fail)
            #expect(RetryPolicy.afterConnectionLost(attempt(method, reused: false)) == .fail)
            // Nothing of it written yet: the server cannot have acted on it.
            #expect(RetryPolicy.afterConnectionLost(attempt(method, wrote: false)) == .resendOnFreshConnection)
        }
    }

    @Test func idempotentRequestsAreResentOnceThenTriedElsewhere() {
        #expect(RetryPolicy.afterConnectionLost(attempt(.get)) == .resendOnFreshConnection)
        #expect(RetryPolicy.afterConnectionLost(attempt(.put, resent: true)) == .tryAnotherServer)
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, reused: false, attempts: 3, retries: 2)) == .fail)
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, reused: false, inTime: false)) == .fail)
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, reused: false, complete: false)) == .fail)
    }

    @Test func partialAnswersAndStreamedBodiesAreNeverRetried() {
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, partial: true)) == .fail)
        #expect(RetryPolicy.afterConnectionLost(attempt(.put, committed: true)) == .fail)
    }

    @Test func connectFailuresMayGoToAnotherServerForAnyMethod() {
        #expect(RetryPolicy.afterConnectFailure(attempts: 1, retries: 2, withinDeadline: true) == .tryAnotherServer)
        #expect(RetryPolicy.afterConnectFailure(attempts: 3, retries: 2, withinDeadline: true) == .fail)
        #expect(RetryPolicy.afterConnectFailure(attempts: 1, retries: 2, withinDeadline: false) == .fail)
    }
}
