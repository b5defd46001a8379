import Foundation
import Testing
@testable import SwitchyardConsole

@Suite struct StatisticsTests {
    func fact(_ id: Int, _ outcome: String, start: String, end: String?, commit: String? = nil, environment: String = "prod", kind: String = "deploy") -> DeploymentFacts {
        DeploymentFacts(id: id, service: "shop", environment: environment, version: "v\(id)", outcome: outcome, startedAt: start, endedAt: end,
                        commitTime: commit, commitSha: commit.map { _ in "abc\(id)" }, kind: kind)
    }

    @Test func knownHistoryGivesKnownNumbers() throws {
        let facts = [
            // Promoted 2 h after its commit.
            fact(1, "promoted", start: "2026-11-01T10:00:00Z", end: "2026-11-01T10:30:00Z", commit: "2026-11-01T08:30:00Z"),
            // Rolled itself back: restored 10 minutes after it started.
            fact(2, "rolled_back", start: "2026-11-02T10:00:00Z", end: "2026-11-02T10:10:00Z", commit: "2026-11-02T09:00:00Z"),
            // Crashed; restored when the next deployment ended (3 h 20 min after its start).
            fact(3, "crashed", start: "2026-11-03T10:00:00Z", end: "2026-11-03T10:05:00Z"),
            fact(4, "promoted", start: "2026-11-03T13:00:00Z", end: "2026-11-03T13:20:00Z", commit: "2026-11-03T12:20:00Z"),
            // A rollback the console ran: a restoration, not a change.
            fact(5, "promoted", start: "2026-11-04T10:00:00Z", end: "2026-11-04T10:01:00Z", kind: "rollback"),
            // Another environment is its own group.
            fact(6, "promoted", start: "2026-11-04T10:00:00Z", end: "2026-11-04T10:01:00Z", environment: "stage"),
        ]
        let stats = DeployStatistics.compute(facts, since: "2026-11-01T00:00:00Z", until: "2026-11-11T00:00:00Z")
        #expect(stats.map(\.environment) == ["prod", "stage"])
        let prod = try #require(stats.first)
        #expect(prod.days == 10)
        #expect(prod.deployments == 4)
        #expect(prod.promoted == 2)
        #expect(prod.failed == 2)
        #expect(prod.deployFrequencyPerDay == 0.2)
        #expect(prod.changeFailureRate == 0.5)
        #expect(prod.leadTime.samples.map(\.seconds) == [7200, 3600])
        #expect(prod.leadTime.medianSeconds == 5400)
        #expect(prod.timeToRestore.samples.map(\.deployment) == [2, 3])
        #expect(prod.timeToRestore.samples.map(\.seconds) == [600, 12_000])
        #expect(prod.timeToRestore.meanSeconds == 6300)
    }

    @Test func emptyMeasuresHaveNoMedian() {
        let stats = DeployStatistics.compute([fact(1, "promoted", start: "2026-11-01T10:00:00Z", end: "2026-11-01T10:30:00Z")], since: nil, until: nil,
                                             now: Date(timeIntervalSince1970: 1_790_000_000))
        #expect(stats.first?.leadTime.count == 0)
        #expect(stats.first?.leadTime.medianSeconds == nil)
        #expect(stats.first?.timeToRestore.count == 0)
        #expect(stats.first?.changeFailureRate == 0)
    }
}

@Suite struct AccessTests {
    @Test func rolesAreSetsOfPermissions() {
        #expect(Role.viewer.allows(.read))
        #expect(!Role.viewer.allows(.approve) && !Role.viewer.allows(.control) && !Role.viewer.allows(.deploy))
        #expect(Role.deployer.allows(.deploy) && Role.deployer.allows(.control) && !Role.deployer.allows(.approve))
        #expect(Role.approver.allows(.approve) && !Role.approver.allows(.deploy))
        #expect(!Role.deployer.allows(.administer) && !Role.approver.allows(.administer))
        #expect(Role.admin.allows(.administer) && Role.admin.allows(.approve))
    }

    @Test func tokensAreStoredAsDigests() {
        let digest = AccessStore.digest("sy_secret")
        #expect(digest.count == 64)
        #expect(digest != "sy_secret")
        #expect(AccessStore.newSecret() != AccessStore.newSecret())
    }
}

@Suite struct ConfigurationTests {
    @Test func defaultsNeedNoFile() {
        let c = ConsoleConfiguration()
        #expect(c.listenDescription == "http://127.0.0.1:9900")
        #expect(c.database == "sqlite:.switchyard/console.sqlite")
    }

    @Test func readsEveryKey() throws {
        let c = try ConsoleConfiguration.parse(yaml: """
            listen: 0.0.0.0:9910
            database: postgres://sy:pw@db:5432/console
            plans: [plans/shop.yaml, /abs/api.yaml]
            poll_interval: 2s
            lease: 5s
            anonymous_viewer: true
            separate_approver: [prod]
            tls: {cert: c.pem, key: k.pem}
            """, file: "/etc/switchyard/console.yaml")
        #expect(c.listenHost == "0.0.0.0" && c.listenPort == 9910)
        #expect(c.plans == ["/etc/switchyard/plans/shop.yaml", "/abs/api.yaml"])
        #expect(c.lease == .seconds(5))
        #expect(c.anonymousViewer)
        #expect(c.separateApprover == ["prod"])
        #expect(c.tlsCertificate == "/etc/switchyard/c.pem")
        #expect(c.listenDescription == "https://0.0.0.0:9910")
    }

    @Test func problemsNameFileLineAndKey() {
        #expect(throws: (any Error).self) { try ConsoleConfiguration.parse(yaml: "listen: nowhere\n", file: "c.yaml") }
        do {
            _ = try ConsoleConfiguration.parse(yaml: "lease: 1s\ndatabase: mysql://x\nbogus: 1\n", file: "c.yaml")
            Issue.record("accepted a bad file")
        } catch {
            let text = "\(error)"
            #expect(text.contains("c.yaml:1"))
            #expect(text.contains("lease"))
            #expect(text.contains("database"))
            #expect(text.contains("bogus"))
        }
    }
}

@Suite struct CSVTests {
    @Test func quotesAndDefusesFormulas() {
        let row = RolloutDetail_Deployment(reason: "=HYPERLINK(\"x\"), bad")
        let text = ConsoleServer.csv([row])
        #expect(text.hasPrefix("id,rollout,service"))
        #expect(text.contains("\"'=HYPERLINK(\"\"x\"\"), bad\""))
    }
}

import SwitchyardConsoleAPI
func RolloutDetail_Deployment(reason: String) -> RolloutDetail.Deployment {
    RolloutDetail.Deployment(id: 1, rollout: 1, service: "shop", environment: "prod", version: "v1", strategy: "canary", actor: "a",
                             startedAt: "2026-11-01T10:00:00Z", endedAt: nil, outcome: "rolled_back", reason: reason, pool: "green",
                             previousPool: "blue", previousVersion: "v0", steps: nil, hooks: nil)
}
