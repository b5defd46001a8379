import Foundation
import SwitchyardAdminClient
import SwitchyardConsoleAPI

/// Where a rollout's change comes from: what `deploy run` was told (`--commit`, `--ticket`...),
/// else what the CI says in its environment, and the commit's time from git when nobody said.
public enum ChangeDetection {
    /// What was given on the command line (the wire type itself); nil fields are looked for elsewhere.
    public typealias Given = ChangeInfo

    /// The change of a rollout, or nil when nothing is known.
    /// - Parameters:
    ///   - environment: the process's environment, for the CI's variables: the commit from
    ///     `GITHUB_SHA` (GitHub Actions), `GIT_COMMIT` (Jenkins) or `CI_COMMIT_SHA` (GitLab); the link
    ///     to the commit (GitHub, GitLab) or the build (`BUILD_URL`, Jenkins).
    ///   - repository: where to ask git for the commit's time when it is not given; nil never asks.
    /// - Throws: when `commitTime` is given but is not an ISO 8601 time.
    public static func resolve(_ given: Given, environment: [String: String], repository: String?) throws(ClientError) -> ChangeInfo? {
        func variable(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let commit = given.commit ?? variable("GITHUB_SHA") ?? variable("GIT_COMMIT") ?? variable("CI_COMMIT_SHA")
        var link = given.link
        if link == nil, let server = variable("GITHUB_SERVER_URL"), let repo = variable("GITHUB_REPOSITORY"), let sha = variable("GITHUB_SHA") {
            link = "\(server)/\(repo)/commit/\(sha)"
        }
        if link == nil, let project = variable("CI_PROJECT_URL"), let sha = variable("CI_COMMIT_SHA") { link = "\(project)/-/commit/\(sha)" }
        if link == nil { link = variable("BUILD_URL") }
        var commitTime: String?
        if let text = given.commitTime {
            guard let time = utc(text) else {
                throw ClientError("--commit-time \(text) is not an ISO 8601 time such as 2026-11-30T09:12:00Z or 2026-11-30T10:12:00+01:00")
            }
            commitTime = time
        } else if let commit, let repository {
            commitTime = gitCommitTime(commit, repository: repository)
        }
        let change = ChangeInfo(commit: commit, commitTime: commitTime, ticket: given.ticket, link: link, changelog: given.changelog)
        return change == ChangeInfo() ? nil : change
    }

    /// An ISO 8601 time, with an offset or fractional seconds or neither, in UTC: 2026-11-30T09:12:00Z.
    public static func utc(_ text: String) -> String? {
        let parser = ISO8601DateFormatter()
        var date = parser.date(from: text)
        if date == nil {
            parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            date = parser.date(from: text)
        }
        guard let date else { return nil }
        return ISO8601DateFormatter().string(from: date)
    }

    /// The commit's time as git knows it in `repository`, or nil (not a repository, unknown
    /// commit, no git): the change is recorded without it.
    static func gitCommitTime(_ commit: String, repository: String) -> String? {
        // Only an object name goes to git: never an option, whatever the CI put in the variable.
        guard (4...64).contains(commit.count), commit.allSatisfy(\.isHexDigit) else { return nil }
        let result = HookRunner.run("git -C {repository} show -s --format=%cI {commit} 2>/dev/null",
                                    values: ["repository": repository.isEmpty ? "." : repository, "commit": commit], timeout: .seconds(10))
        guard result.exitCode == 0 else { return nil }
        return utc(result.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
