import Testing
@testable import SwitchyardConfig

@Suite("Configuration: observability and log format")
struct ObservabilityConfigTests {
    @Test func defaultsAreNoListenerAndTextLogs() throws {
        let c = try ConfigLoader.parse(yaml: validConfig, file: "t.yaml")
        #expect(c.observability == nil)
        #expect(c.logFormat == .text)
    }

    @Test func listenerAndJSONLogsLoad() throws {
        let c = try ConfigLoader.parse(yaml: validConfig + "\nobservability: { bind: \"[::1]:9100\" }\nlog_format: json\n", file: "t.yaml")
        #expect(c.observability?.bind.port == 9100)
        #expect(c.observability?.bind.family == .ipv6)
        #expect(c.logFormat == .json)
    }

    @Test func badValuesAreNamedWithTheirKey() {
        let p = problems(validConfig + "\nobservability: { bind: 127.0.0.1:0, port: 3 }\nlog_format: yaml\n")
        #expect(p.map(\.keyPath).sorted() == ["log_format", "observability.bind", "observability.port"], "\(p)")
        #expect(p.contains { $0.keyPath == "log_format" && $0.message == "\"yaml\" is not a log format; use text or json" })
        #expect(problems(validConfig + "\nobservability: {}\n").map(\.keyPath) == ["observability.bind"])
    }

    @Test func anAddressAListenerOrTheAdminListenerHasIsRefused() {
        let p = problems(validConfig + "\nobservability: { bind: 127.0.0.1:8080 }\n")
        #expect(p.map(\.keyPath) == ["observability.bind"])
        #expect(p.first?.message.contains("also a listener's address") == true)
        #expect(p.first?.line == 20)
    }

    @Test func serverHistogramsAreOffUnlessAskedFor() throws {
        #expect(try ConfigLoader.parse(yaml: validConfig, file: "t.yaml").metrics.serverHistograms == false)
        let on = try ConfigLoader.parse(yaml: validConfig + "\nmetrics: { server_histograms: true }\n", file: "t.yaml")
        #expect(on.metrics.serverHistograms)
        let p = problems(validConfig + "\nmetrics: { server_histograms: yes please, per_server: true }\n")
        #expect(p.map(\.keyPath).sorted() == ["metrics.per_server", "metrics.server_histograms"], "\(p)")
        #expect(p.contains { $0.keyPath == "metrics.server_histograms" && $0.message == "true or false" })
    }
}
