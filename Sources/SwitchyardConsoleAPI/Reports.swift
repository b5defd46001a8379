import Foundation

// The report protocol between a runner (`switchyard deploy run --console URL`) and the
// console. The runner's local history is the record; a report replicates what the console
// has not acknowledged yet, so a report can be repeated, lost or delayed without harm:
// rows are keyed by the run's identity and the runner's own row ids.

/// What a runner sends to `POST /api/v1/reports`, about a quarter of a second apart while its
/// rollout runs, and until every row is acknowledged after it ends.
public struct RunReport: Codable, Sendable, Equatable {
    /// The run's identity, chosen by the runner (a UUID); the console's rollout is keyed by it.
    public var run: String
    public var service: String
    public var version: String
    public var actor: String
    public var host: String
    public var pid: Int
    /// The plan's path on the runner.
    public var planPath: String
    /// The plan's text, with the first report (the console keeps it to abort a crashed run
    /// and to show the steps; it never returns it: a plan may hold a webhook URL).
    public var planText: String?
    /// The environments this run goes through, in order.
    public var environments: [String]
    public var change: ChangeInfo?
    public var rollout: RolloutRecord
    /// Every deployment of the run, whole (there are few).
    public var deployments: [DeploymentRecord]
    /// Rows with a local id above what the console acknowledged.
    public var steps: [StepRecord]
    public var hooks: [HookRecord]
    public var events: [EventRecord]
    /// Every control that came from the console and was handled, with its answer.
    public var controlResults: [ControlResult]
    /// The proxies' lock tokens the run holds; kept by the console to abort a crashed run,
    /// never returned by it.
    public var locks: [LockRecord]
    /// The highest console control id the runner already has.
    public var controlsAfter: Int

    public init(run: String, service: String, version: String, actor: String, host: String, pid: Int, planPath: String,
                planText: String?, environments: [String], change: ChangeInfo?, rollout: RolloutRecord,
                deployments: [DeploymentRecord], steps: [StepRecord], hooks: [HookRecord], events: [EventRecord],
                controlResults: [ControlResult], locks: [LockRecord], controlsAfter: Int) {
        self.run = run; self.service = service; self.version = version; self.actor = actor; self.host = host; self.pid = pid
        self.planPath = planPath; self.planText = planText; self.environments = environments; self.change = change
        self.rollout = rollout; self.deployments = deployments; self.steps = steps; self.hooks = hooks; self.events = events
        self.controlResults = controlResults; self.locks = locks; self.controlsAfter = controlsAfter
    }
}

/// The console's answer to a report.
public struct ReportAnswer: Codable, Sendable, Equatable {
    /// The console's id of the rollout (what its API and UI use).
    public var rollout: Int
    /// The highest local ids stored, per kind of row.
    public var acknowledged: Acknowledged
    /// Controls given at the console that the runner has not received yet, oldest first.
    public var controls: [ControlOrder]

    public init(rollout: Int, acknowledged: Acknowledged, controls: [ControlOrder]) {
        self.rollout = rollout; self.acknowledged = acknowledged; self.controls = controls
    }

    public struct Acknowledged: Codable, Sendable, Equatable {
        public var steps: Int
        public var hooks: Int
        public var events: Int
        public init(steps: Int, hooks: Int, events: Int) { self.steps = steps; self.hooks = hooks; self.events = events }
    }
}

/// Where a change comes from, for lead time and the history: given to `deploy run` by flags
/// or read from the CI's environment.
public struct ChangeInfo: Codable, Sendable, Equatable {
    public var commit: String?
    /// ISO 8601, e.g. 2026-11-30T09:12:00Z.
    public var commitTime: String?
    public var ticket: String?
    public var link: String?
    public var changelog: String?
    public init(commit: String? = nil, commitTime: String? = nil, ticket: String? = nil, link: String? = nil, changelog: String? = nil) {
        self.commit = commit; self.commitTime = commitTime; self.ticket = ticket; self.link = link; self.changelog = changelog
    }
}

/// The run's row of the runner's history. Times are ISO 8601 in UTC.
public struct RolloutRecord: Codable, Sendable, Equatable {
    public var startedAt: String
    public var endedAt: String?
    /// running, promoted, rolled_back, failed, crashed.
    public var outcome: String
    public var reason: String?
    public var heartbeatAt: String?
    /// Where it is: the current environment and its phase.
    public var environment: String?
    public var progress: String?
    public init(startedAt: String, endedAt: String?, outcome: String, reason: String?, heartbeatAt: String?, environment: String?, progress: String?) {
        self.startedAt = startedAt; self.endedAt = endedAt; self.outcome = outcome; self.reason = reason
        self.heartbeatAt = heartbeatAt; self.environment = environment; self.progress = progress
    }
}

public struct DeploymentRecord: Codable, Sendable, Equatable {
    public var localId: Int
    public var environment: String
    public var version: String
    public var strategy: String
    public var actor: String
    public var startedAt: String
    public var endedAt: String?
    /// running, promoted, rolled_back, failed, crashed.
    public var outcome: String
    public var reason: String?
    public var pool: String?
    public var previousPool: String?
    public var previousVersion: String?
    public init(localId: Int, environment: String, version: String, strategy: String, actor: String, startedAt: String, endedAt: String?,
                outcome: String, reason: String?, pool: String?, previousPool: String?, previousVersion: String?) {
        self.localId = localId; self.environment = environment; self.version = version; self.strategy = strategy; self.actor = actor
        self.startedAt = startedAt; self.endedAt = endedAt; self.outcome = outcome; self.reason = reason; self.pool = pool
        self.previousPool = previousPool; self.previousVersion = previousVersion
    }
}

public struct StepRecord: Codable, Sendable, Equatable {
    public var localId: Int
    /// The local id of the deployment the step belongs to.
    public var deployment: Int
    public var time: String
    public var kind: String
    public var detail: String
    public var weight: String?
    /// Analysis figures, when the step is an analysis.
    public var verdict: String?
    public var requests: Int?
    public var errorRate: Double?
    public var baselineErrorRate: Double?
    public var p99Ms: Double?
    public var server: String?
    public init(localId: Int, deployment: Int, time: String, kind: String, detail: String, weight: String? = nil, verdict: String? = nil,
                requests: Int? = nil, errorRate: Double? = nil, baselineErrorRate: Double? = nil, p99Ms: Double? = nil, server: String? = nil) {
        self.localId = localId; self.deployment = deployment; self.time = time; self.kind = kind; self.detail = detail; self.weight = weight
        self.verdict = verdict; self.requests = requests; self.errorRate = errorRate; self.baselineErrorRate = baselineErrorRate
        self.p99Ms = p99Ms; self.server = server
    }
}

public struct HookRecord: Codable, Sendable, Equatable {
    public var localId: Int
    public var deployment: Int?
    public var phase: String
    public var command: String
    public var exitCode: Int?
    public var durationMs: Int?
    public var output: String?
    public var time: String
    public init(localId: Int, deployment: Int?, phase: String, command: String, exitCode: Int?, durationMs: Int?, output: String?, time: String) {
        self.localId = localId; self.deployment = deployment; self.phase = phase; self.command = command; self.exitCode = exitCode
        self.durationMs = durationMs; self.output = output; self.time = time
    }
}

/// One event of the run, as `deploy run --json` prints it.
public struct EventRecord: Codable, Sendable, Equatable {
    public var localId: Int
    public var time: String
    /// started, environment, hook, step, analysis, paused, approval_needed, promoted, rolled_back, finished...
    public var kind: String
    public var environment: String?
    public var message: String
    /// The event's figures as a JSON object (weight, error_rate, p99_ms...).
    public var fields: String
    public init(localId: Int, time: String, kind: String, environment: String?, message: String, fields: String) {
        self.localId = localId; self.time = time; self.kind = kind; self.environment = environment; self.message = message; self.fields = fields
    }
}

/// A control given at the console, as the runner receives it.
public struct ControlOrder: Codable, Sendable, Equatable {
    public var id: Int
    /// approve, pause, resume, promote, abort.
    public var command: String
    /// approve: the environment; promote: "full" for a full promotion.
    public var argument: String?
    public var actor: String
    public init(id: Int, command: String, argument: String?, actor: String) {
        self.id = id; self.command = command; self.argument = argument; self.actor = actor
    }
}

/// How the runner answered a control from the console.
public struct ControlResult: Codable, Sendable, Equatable {
    /// The console's id of the control.
    public var id: Int
    public var result: String
    public var handledAt: String
    public init(id: Int, result: String, handledAt: String) { self.id = id; self.result = result; self.handledAt = handledAt }
}

public struct LockRecord: Codable, Sendable, Equatable {
    public var environment: String
    public var token: String
    public var released: Bool
    public init(environment: String, token: String, released: Bool) { self.environment = environment; self.token = token; self.released = released }
}

/// The JSON coders of the console API: snake_case keys.
public enum ConsoleJSON {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}
