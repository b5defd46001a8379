import ArgumentParser
import SwitchyardAdminAPI
import Testing
@testable import switchyard

@Suite struct CtlCommandTests {
    /// A new admin API endpoint without a ctl command fails here.
    @Test func everyAdminEndpointHasACtlCommand() {
        var covered = Set<AdminEndpoint.ID>()
        for command in Ctl.configuration.subcommands {
            guard let ctl = command as? any CtlCommand.Type else {
                Issue.record("\(command) does not say which admin API endpoints it calls (CtlCommand)")
                continue
            }
            covered.formUnion(ctl.endpoints)
        }
        let missing = AdminEndpoint.ID.allCases.filter { !covered.contains($0) }.map(\.rawValue)
        #expect(missing.isEmpty, "admin API endpoints without a switchyard ctl command: \(missing)")
    }

    /// Each command's help names the endpoints it calls.
    @Test func helpNamesTheEndpoints() {
        let help = CtlCanary.helpMessage()
        #expect(help.contains("Admin API: PUT /v1/services/{service}/canary."), "\(help)")
    }

    @Test func rulesAreReadFromTheCommandLine() {
        let rule = CtlRules.parse("header:X-Canary=always@green")
        #expect(rule == RulesBody.Rule(kind: .header, name: "X-Canary", value: "always", pool: "green"))
        // The value may hold = and @; the pool is after the last @.
        #expect(CtlRules.parse("cookie:c=a=b@c@blue") == RulesBody.Rule(kind: .cookie, name: "c", value: "a=b@c", pool: "blue"))
        for bad in ["X-Canary=always@green", "query:a=b@c", "header:=v@p", "header:n=v@", "header:n@p=v", "header:nv"] {
            #expect(CtlRules.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func prometheusSamplesAreRead() {
        let text = """
            # HELP switchyard_generation The generation.
            # TYPE switchyard_generation gauge
            switchyard_generation 7
            switchyard_pool_responses_total{pool="blue",version="v1",class="2xx"} 12
            weird{a="x,\\"y\\"",b="z"} +Inf
            broken{a="x" 1
            """
        let samples = PrometheusText.samples(text)
        #expect(samples.count == 3)
        #expect(samples.first?.name == "switchyard_generation" && samples.first?.value == 7)
        #expect(samples.dropFirst().first?.labels == ["pool": "blue", "version": "v1", "class": "2xx"])
        #expect(samples.last?.labels == ["a": "x,\"y\"", "b": "z"] && samples.last?.value == .infinity)
    }
}
