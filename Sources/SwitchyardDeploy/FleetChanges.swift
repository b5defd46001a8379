import Foundation
import SwitchyardAdminAPI
import SwitchyardAdminClient
import SwitchyardConfig

/// Traffic changes applied to every proxy of an environment as one step.
///
/// A step first looks at every proxy: each must be where the rollout left it (at the
/// environment's first look, where the others are). A proxy that is not has drifted: someone
/// changed it by hand (a broken lock, a restart without its state file). The step refuses to
/// overwrite it and fails, naming the proxy and the difference. Otherwise the change goes to
/// each proxy in turn, in the fleet's order, on the condition that its state is still the one
/// looked at (`If-Match`), and each must answer with a newer generation (every worker has it).
/// When one refuses or cannot be reached, the proxies already changed are put back to their
/// routing before the step, and the step fails naming the proxy: the environment's proxies
/// are in step at every change the rollout acknowledges.
///
/// A rollback step differs: it goes to every proxy it can. A proxy already there (a canary
/// the guard took out) is skipped, a drifted proxy is left as it is, and a proxy that refuses
/// does not stop the others; the step then fails naming each, because the rollout can no
/// longer vouch for where traffic is.
extension Rollout {
    // MARK: Looking

    /// Every proxy's status and routing, without judging them.
    func views(_ fleet: ProxyFleet) throws -> [ProxyView] {
        try statuses(fleet).map { client, status in
            guard let routing = ServiceRouting(status: status, service: plan.service, pools: fleet.trackedPools) else {
                throw Failure(reason: "\(fleet.label(client)) no longer has service \(plan.service); see `switchyard deploy status \(plan.path)`", unreachable: true)
            }
            return ProxyView(client: client, status: status, routing: routing)
        }
    }

    /// The environment's first look: every proxy has the service, and they agree on its
    /// routing. Remembers where each is and its last guard trip.
    /// - Parameter requireAgreement: false for `deploy abort` of a crashed rollout, which puts
    ///   back whatever it finds.
    func survey(_ fleet: ProxyFleet, requireAgreement: Bool = true) throws {
        let views = try self.views(fleet)
        fleet.expected = [:]
        fleet.tripsBefore = [:]
        for view in views {
            fleet.expected[view.client.address.description] = view.routing
            fleet.tripsBefore[view.client.address.description] = view.status.services[plan.service]?.guardTrip?.time
        }
        if requireAgreement, let disagreement = Self.disagreement(views) {
            throw Failure(reason: "\(fleet.name): the proxies disagree before the rollout: \(disagreement); "
                          + "make them agree with `switchyard ctl` (or `deploy status \(plan.path)` to see them), then run again", drift: true)
        }
    }

    /// Why the proxies' routings differ, or nil when they agree.
    static func disagreement(_ views: [ProxyView]) -> String? {
        guard let first = views.first, views.contains(where: { $0.routing != first.routing }) else { return nil }
        return views.map { "\($0.client.address) has \($0.routing)" }.joined(separator: "; ")
    }

    /// Looks at every proxy and checks it is where the rollout left it: a new guard trip
    /// fails with the guard's reason (the usual rollback follows), any other difference is
    /// drift.
    @discardableResult
    func check(_ fleet: ProxyFleet) throws -> [ProxyView] {
        let views = try self.views(fleet)
        for view in views {
            let address = view.client.address.description
            if let trip = view.status.services[plan.service]?.guardTrip, trip.time != fleet.tripsBefore[address] {
                fleet.tripsBefore[address] = trip.time
                let reason = "the proxy's guard tripped\(fleet.proxies.count > 1 ? " on \(view.client.address)" : ""): \(trip.reason)"
                emit(.guardTripped, "\(fleet.name): \(reason)", ["trip": trip.jsonObject, "proxy": address, "reason": reason])
                throw Failure(reason: reason)
            }
        }
        var drifted: [String] = []
        for view in views {
            guard let expected = fleet.expected[view.client.address.description], view.routing != expected else { continue }
            drifted.append("\(fleet.label(view.client)) has \(view.routing.differences(from: expected))")
        }
        if !drifted.isEmpty {
            let reason = "drift: \(drifted.joined(separator: "; ")), changed outside this rollout (see `switchyard ctl audit` there); "
                + "the rollout does not overwrite it"
            emit(.notice, "\(fleet.name): \(reason)", ["drift": drifted])
            throw Failure(reason: reason, drift: true)
        }
        return views
    }

    // MARK: Changing

    /// Applies `change` to every proxy of `fleet` as one step (see above).
    func apply(_ change: TrafficChange, to fleet: ProxyFleet) throws {
        let views = try check(fleet)
        var changed: [ProxyView] = []
        for view in views {
            do {
                try send(change, to: view, in: fleet)
                changed.append(view)
            } catch let failure as Failure {
                var reason = failure.reason
                if case .refused(412, _, _)? = failure.refusal { reason = try explainPreconditionFailure(view, in: fleet) ?? reason }
                let putBack = putBack(changed, from: change, in: fleet)
                let also = changed.isEmpty ? "" : "; \(putBack.done.map { $0.description }.joined(separator: ", ")) put back"
                if !putBack.failed.isEmpty {
                    throw Failure(reason: "\(fleet.name): \(change) failed: \(reason)\(also); could not put back \(putBack.failed.joined(separator: "; "))",
                                  unreachable: true)
                }
                throw Failure(reason: "\(reason)\(also)", unreachable: failure.unreachable, refusal: failure.refusal)
            }
        }
    }

    /// A rollback's change: to every proxy not already there, leaving drifted ones as they
    /// are (see above).
    func applyRollback(_ change: TrafficChange, to fleet: ProxyFleet) throws {
        var problems: [String] = []
        for view in try views(fleet) {
            let address = view.client.address.description
            if change.isSatisfied(by: view.routing) {
                fleet.expected[address] = view.routing
                continue
            }
            if let expected = fleet.expected[address], view.routing != expected {
                problems.append("\(fleet.label(view.client)) was left as it is: it has \(view.routing.differences(from: expected)), changed outside this rollout")
                continue
            }
            do { try send(change, to: view, in: fleet) } catch let failure as Failure { problems.append(failure.reason) }
        }
        if !problems.isEmpty {
            throw Failure(reason: "\(fleet.name): \(change): \(problems.joined(separator: "; "))", unreachable: true)
        }
    }

    /// Sends `change` to one proxy on the condition that its state is the one in `view`, and
    /// checks the answer's generation; remembers the proxy's new routing.
    ///
    /// Locks are per service, so another service's rollout on the same proxy moves its
    /// generation too: a refusal on the condition (412) is retried at the new generation as
    /// long as this service's routing and pools are still the ones looked at.
    func send(_ change: TrafficChange, to view: ProxyView, in fleet: ProxyFleet) throws {
        var view = view
        var attempts = 1
        while true {
            do {
                try sendOnce(change, to: view, in: fleet)
                return
            } catch let failure as Failure {
                guard attempts < 10, case .refused(412, _, _)? = failure.refusal else { throw failure }
                let now = try status(view.client)
                guard ServiceRouting(status: now, service: plan.service, pools: fleet.trackedPools) == view.routing else { throw failure }
                view = ProxyView(client: view.client, status: now, routing: view.routing)
                attempts += 1
            }
        }
    }

    private func sendOnce(_ change: TrafficChange, to view: ProxyView, in fleet: ProxyFleet) throws {
        let service = plan.service
        let generation = view.status.generation
        let answer: AdminChange
        do {
            answer = try retrying(view.client, change.endpoint(service: service)) { api throws(AdminFailure) in
                var conditional = api
                conditional.ifMatch = generation
                return try change.send(conditional, service: service)
            }
        } catch let failure as Failure {
            let target = change.applied(to: view.routing)
            guard failure.refusal != nil, try hasRouting(view.client, target, newerThan: generation, in: fleet) else { throw failure }
            // A retry after a lost answer met the change itself (412): it went through.
            fleet.expected[view.client.address.description] = target
            return
        }
        guard answer.generation > generation else {
            throw Failure(reason: "\(fleet.label(view.client)) answered \(change) with generation \(answer.generation), not above \(generation): "
                          + "the change may not have reached every worker; see `switchyard deploy status \(plan.path)`", unreachable: true)
        }
        fleet.expected[view.client.address.description] = change.applied(to: view.routing)
    }

    /// Sends a change without a condition (putting back); a refusal that leaves the proxy
    /// with `target` anyway (a retry after a lost answer: "already active") is no failure.
    func sendUnconditionally(_ change: TrafficChange, to client: AdminClient, target: ServiceRouting, in fleet: ProxyFleet) throws {
        let service = plan.service
        do {
            _ = try retrying(client, change.endpoint(service: service)) { api throws(AdminFailure) in try change.send(api, service: service) }
        } catch let failure as Failure {
            guard failure.refusal != nil, try hasRouting(client, target, newerThan: nil, in: fleet) else { throw failure }
        }
    }

    /// Whether the proxy has `target` now (at a generation above `generation`, when given).
    func hasRouting(_ client: AdminClient, _ target: ServiceRouting, newerThan generation: UInt64?, in fleet: ProxyFleet) throws -> Bool {
        let now = try status(client)
        if let generation, now.generation <= generation { return false }
        return ServiceRouting(status: now, service: plan.service, pools: fleet.trackedPools) == target
    }

    /// Puts the proxies in `changed` back to their routing in the view taken before `change`.
    func putBack(_ changed: [ProxyView], from change: TrafficChange, in fleet: ProxyFleet) -> (done: [DeployPlan.AdminAddress], failed: [String]) {
        var done: [DeployPlan.AdminAddress] = []
        var failed: [String] = []
        for view in changed.reversed() {
            var current = change.applied(to: view.routing)
            do {
                for undo in change.undo(to: view.routing) where undo.applied(to: current) != current {
                    try sendUnconditionally(undo, to: view.client, target: undo.applied(to: current), in: fleet)
                    current = undo.applied(to: current)
                }
                fleet.expected[view.client.address.description] = view.routing
                done.append(view.client.address)
                emit(.notice, "\(fleet.name): \(view.client.address) put back to \(view.routing)")
            } catch {
                failed.append("\(view.client.address): \((error as? Failure)?.reason ?? "\(error)")")
            }
        }
        return (done, failed)
    }

    /// Why a proxy refused a change on its condition (412): its guard tripped, or its routing
    /// changed since it was looked at. Nil when it cannot say.
    func explainPreconditionFailure(_ view: ProxyView, in fleet: ProxyFleet) throws -> String? {
        let address = view.client.address.description
        let now = try status(view.client)
        if let trip = now.services[plan.service]?.guardTrip, trip.time != fleet.tripsBefore[address] {
            fleet.tripsBefore[address] = trip.time
            return "the proxy's guard tripped\(fleet.proxies.count > 1 ? " on \(view.client.address)" : ""): \(trip.reason)"
        }
        guard let routing = ServiceRouting(status: now, service: plan.service, pools: fleet.trackedPools), routing != view.routing else { return nil }
        return "\(fleet.label(view.client)) changed during the step: it has \(routing.differences(from: view.routing))"
    }
}
