import Foundation

// What the console's API answers. Field names are snake_case on the wire (`ConsoleJSON`).

/// A rollout as `GET /api/v1/rollouts` lists it.
public struct RolloutSummary: Codable, Sendable, Equatable {
    public var id: Int
    public var run: String
    public var service: String
    public var version: String
    /// pending, running, promoted, rolled_back, failed, crashed.
    public var state: String
    /// Why it ended as it did, or what it waits for.
    public var reason: String?
    /// reported (a runner streams it) or executed (the console runs it).
    public var mode: String
    /// deploy or rollback (a deploy-level rollback of one environment).
    public var kind: String
    public var actor: String
    public var host: String?
    public var startedAt: String
    public var endedAt: String?
    /// The environment it is in and what it does there, while it runs.
    public var environment: String?
    public var progress: String?
    public var environments: [EnvironmentState]
    public var change: ChangeInfo?

    public init(id: Int, run: String, service: String, version: String, state: String, reason: String?, mode: String, kind: String,
                actor: String, host: String?, startedAt: String, endedAt: String?, environment: String?, progress: String?,
                environments: [EnvironmentState], change: ChangeInfo?) {
        self.id = id; self.run = run; self.service = service; self.version = version; self.state = state; self.reason = reason
        self.mode = mode; self.kind = kind; self.actor = actor; self.host = host; self.startedAt = startedAt; self.endedAt = endedAt
        self.environment = environment; self.progress = progress; self.environments = environments; self.change = change
    }

    /// One environment of a rollout.
    public struct EnvironmentState: Codable, Sendable, Equatable {
        public var name: String
        /// waiting (not reached), running, promoted, rolled_back, failed, crashed.
        public var state: String
        public var deployment: Int?
        public init(name: String, state: String, deployment: Int?) { self.name = name; self.state = state; self.deployment = deployment }
    }
}

/// A rollout with its deployments, steps, hooks, events and controls (`GET /api/v1/rollouts/{id}`).
public struct RolloutDetail: Codable, Sendable, Equatable {
    public var rollout: RolloutSummary
    public var deployments: [Deployment]
    public var events: [Event]
    public var controls: [Control]

    public init(rollout: RolloutSummary, deployments: [Deployment], events: [Event], controls: [Control]) {
        self.rollout = rollout; self.deployments = deployments; self.events = events; self.controls = controls
    }

    public struct Deployment: Codable, Sendable, Equatable {
        public var id: Int
        public var rollout: Int
        public var service: String
        public var environment: String
        public var version: String
        public var strategy: String
        public var actor: String
        public var startedAt: String
        public var endedAt: String?
        public var outcome: String
        public var reason: String?
        public var pool: String?
        public var previousPool: String?
        public var previousVersion: String?
        public var steps: [StepRecord]?
        public var hooks: [HookRecord]?
        public init(id: Int, rollout: Int, service: String, environment: String, version: String, strategy: String, actor: String,
                    startedAt: String, endedAt: String?, outcome: String, reason: String?, pool: String?, previousPool: String?,
                    previousVersion: String?, steps: [StepRecord]?, hooks: [HookRecord]?) {
            self.id = id; self.rollout = rollout; self.service = service; self.environment = environment; self.version = version
            self.strategy = strategy; self.actor = actor; self.startedAt = startedAt; self.endedAt = endedAt; self.outcome = outcome
            self.reason = reason; self.pool = pool; self.previousPool = previousPool; self.previousVersion = previousVersion
            self.steps = steps; self.hooks = hooks
        }
    }

    public struct Event: Codable, Sendable, Equatable {
        public var time: String
        public var kind: String
        public var environment: String?
        public var message: String
        public init(time: String, kind: String, environment: String?, message: String) {
            self.time = time; self.kind = kind; self.environment = environment; self.message = message
        }
    }

    public struct Control: Codable, Sendable, Equatable {
        public var id: Int
        public var command: String
        public var argument: String?
        public var actor: String
        public var createdAt: String
        public var handledAt: String?
        public var result: String?
        public init(id: Int, command: String, argument: String?, actor: String, createdAt: String, handledAt: String?, result: String?) {
            self.id = id; self.command = command; self.argument = argument; self.actor = actor; self.createdAt = createdAt
            self.handledAt = handledAt; self.result = result
        }
    }
}

/// The answer to `POST /api/v1/rollouts/{id}/{approve|pause|resume|promote|abort}`: 200 when the
/// rollout answered within the wait, 202 when it has not yet (`result` is then null).
public struct ControlAnswer: Codable, Sendable, Equatable {
    public var control: Int
    public var rollout: Int
    public var command: String
    public var result: String?
    public init(control: Int, rollout: Int, command: String, result: String?) {
        self.control = control; self.rollout = rollout; self.command = command; self.result = result
    }
}

/// One entry of the change feed (`GET /api/v1/events?after=N&wait=S`, and the `data:` of each
/// server-sent event of `GET /api/v1/events/stream`).
public struct FeedEntry: Codable, Sendable, Equatable {
    /// Increasing; give the last one seen as `after` (or `Last-Event-ID`) to go on from there.
    public var id: Int
    public var time: String
    /// rollout (a rollout changed), event (a rollout's event), control, lock, service.
    public var topic: String
    public var rollout: Int?
    public var service: String?
    public var environment: String?
    /// For `event`: the event's kind; else what changed.
    public var kind: String
    public var message: String
    public init(id: Int, time: String, topic: String, rollout: Int?, service: String?, environment: String?, kind: String, message: String) {
        self.id = id; self.time = time; self.topic = topic; self.rollout = rollout; self.service = service
        self.environment = environment; self.kind = kind; self.message = message
    }
}

/// An error answer: `{"error": "...", "field": "..."}`.
public struct ConsoleErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public var field: String?
    public init(error: String, field: String? = nil) { self.error = error; self.field = field }
}
