import Foundation
import SwitchyardAdminClient
import Testing
@testable import SwitchyardDeploy

/// What the console client checks and builds before any request (the calls themselves are
/// tested against a real server in the integration tests).
@Suite struct ConsoleClientTests {
    @Test func theConsoleURLIsCheckedAndItsPathKeptAsAPrefix() throws {
        #expect(throws: ClientError.self) { try ConsoleClient(url: "console.example.com", token: nil, ca: nil) }
        #expect(throws: ClientError.self) { try ConsoleClient(url: "https://user:secret@console.example.com", token: nil, ca: nil) }
        #expect(throws: ClientError.self) { try ConsoleClient(url: "https://console.example.com", token: nil, ca: "/nonexistent/ca.pem") }
        let client = try ConsoleClient(url: "https://console.example.com/switchyard/", token: "", ca: nil)
        #expect(client.basePath == "/switchyard" && client.token == nil, "an empty token is none")
        #expect(try ConsoleClient(url: "http://127.0.0.1:8080", token: "t", ca: nil).basePath == "")
    }

    @Test func queryValuesAreEncodedAndMissingOnesLeftOut() {
        #expect(ConsoleClient.query([("service", "web & api"), ("state", nil), ("limit", "1")]) == "?service=web%20%26%20api&limit=1")
        #expect(ConsoleClient.query([("state", nil)]) == "")
    }

    @Test func onlyAnUnreachableOrFailingConsoleIsRetried() {
        #expect(ConsoleFailure.unreachable("refused").isTransient)
        #expect(ConsoleFailure.server(status: 503, message: "").isTransient)
        #expect(ConsoleFailure.refused(status: 429, error: .init(error: "slow down")).isTransient)
        #expect(!ConsoleFailure.refused(status: 401, error: .init(error: "the token is not valid")).isTransient)
        #expect(!ConsoleFailure.invalidAnswer("no rollout").isTransient)
        #expect(ConsoleFailure.refused(status: 409, error: .init(error: "rollout 3 is not running", field: "state")).description
                == "the console refused (HTTP 409): rollout 3 is not running (field state)")
    }
}
