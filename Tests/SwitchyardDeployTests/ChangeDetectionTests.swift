import Foundation
import SwitchyardAdminClient
import SwitchyardConsoleAPI
import Testing
@testable import SwitchyardDeploy

/// Where a rollout's change comes from: flags first, then the CI's variables, and the
/// commit's time from git when nobody gave it.
@Suite struct ChangeDetectionTests {
    @Test func nothingKnownIsNoChange() throws {
        #expect(try ChangeDetection.resolve(.init(), environment: [:], repository: nil) == nil)
    }

    @Test func flagsWinOverTheCIsVariables() throws {
        let environment = ["GITHUB_SHA": "aaaa111", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/shop", "BUILD_URL": "https://ci/1"]
        let change = try ChangeDetection.resolve(.init(commit: "bbbb222", commitTime: "2026-11-30T10:12:00+01:00", ticket: "OPS-142",
                                                       link: "https://git.example.com/c/bbbb222", changelog: "Faster checkout"),
                                                 environment: environment, repository: nil)
        #expect(change == ChangeInfo(commit: "bbbb222", commitTime: "2026-11-30T09:12:00Z", ticket: "OPS-142",
                                     link: "https://git.example.com/c/bbbb222", changelog: "Faster checkout"))
    }

    @Test func theCIsVariablesNameTheCommitAndItsPage() throws {
        let github = try ChangeDetection.resolve(.init(), environment: ["GITHUB_SHA": "aaaa111", "GITHUB_SERVER_URL": "https://github.com",
                                                                        "GITHUB_REPOSITORY": "acme/shop"], repository: nil)
        #expect(github == ChangeInfo(commit: "aaaa111", link: "https://github.com/acme/shop/commit/aaaa111"))
        let jenkins = try ChangeDetection.resolve(.init(), environment: ["GIT_COMMIT": "cccc333", "BUILD_URL": "https://jenkins/job/shop/42/"],
                                                  repository: nil)
        #expect(jenkins == ChangeInfo(commit: "cccc333", link: "https://jenkins/job/shop/42/"))
        let gitlab = try ChangeDetection.resolve(.init(), environment: ["CI_COMMIT_SHA": "dddd444", "CI_PROJECT_URL": "https://gitlab.com/acme/shop"],
                                                 repository: nil)
        #expect(gitlab == ChangeInfo(commit: "dddd444", link: "https://gitlab.com/acme/shop/-/commit/dddd444"))
        let empty = try ChangeDetection.resolve(.init(), environment: ["GITHUB_SHA": "", "GIT_COMMIT": "eeee555"], repository: nil)
        #expect(empty?.commit == "eeee555", "an empty variable is no value")
    }

    @Test func aCommitTimeMustBeISO8601AndIsKeptInUTC() throws {
        #expect(ChangeDetection.utc("2026-11-30T09:12:00Z") == "2026-11-30T09:12:00Z")
        #expect(ChangeDetection.utc("2026-11-30T09:12:00.250Z") == "2026-11-30T09:12:00Z")
        #expect(ChangeDetection.utc("2026-11-30T04:12:00-05:00") == "2026-11-30T09:12:00Z")
        #expect(ChangeDetection.utc("30/11/2026") == nil)
        #expect(throws: ClientError.self) { try ChangeDetection.resolve(.init(commitTime: "yesterday"), environment: [:], repository: nil) }
    }

    @Test func theCommitTimeIsAskedOfGitWhenNotGiven() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchyard-git-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let commit = HookRunner.run("""
            cd {dir} && git init -q && GIT_COMMITTER_DATE='2026-11-30T10:12:00+01:00' git -c user.name=t -c user.email=t@example.com \
            commit -q --allow-empty -m app && git rev-parse HEAD
            """, values: ["dir": directory], timeout: .seconds(30))
        try #require(commit.exitCode == 0, "\(commit.output)")
        let sha = commit.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let change = try ChangeDetection.resolve(.init(commit: sha), environment: [:], repository: directory)
        #expect(change?.commitTime == "2026-11-30T09:12:00Z")
        // Unknown to git, not a repository, or not an object name: recorded without a time.
        #expect(try ChangeDetection.resolve(.init(commit: "0123abcd"), environment: [:], repository: directory)?.commitTime == nil)
        #expect(try ChangeDetection.resolve(.init(commit: sha), environment: [:], repository: "/nonexistent")?.commitTime == nil)
        #expect(try ChangeDetection.resolve(.init(commit: "--output=/tmp/x"), environment: [:], repository: directory)?.commitTime == nil)
    }
}
