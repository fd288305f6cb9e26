import XCTest
import Foundation
import Wire
import PacketIO
import Trace
@testable import Suite

/// A suite environment over simulated paths: every trace gets a fresh path with the same hops.
final class SimulatedEnvironment: SuiteEnvironment, @unchecked Sendable {
    let hops: [SimulatedPath.Hop]
    let server: SimulatedPath.Server
    let sessions: SessionChecker?
    private let lock = NSLock()
    private(set) var traces: [TraceConfiguration] = []

    init(hops: [SimulatedPath.Hop], server: SimulatedPath.Server = .mptcp, sessions: SessionChecker? = nil) {
        self.hops = hops
        self.server = server
        self.sessions = sessions
    }

    func resolve(_ target: String) throws -> IPAddress {
        guard let a = IPAddress(target) else { throw SuiteError("cannot resolve \(target)", at: nil) }
        return a
    }

    func source(toward target: IPAddress) throws -> IPAddress {
        if case .v4 = target { return IPAddress("198.18.0.1")! }
        return IPAddress("2001:db8::1")!
    }

    func traceNetwork(for configuration: TraceConfiguration) throws -> PacketNetwork {
        lock.lock()
        traces.append(configuration)
        lock.unlock()
        return SimulatedPath(client: configuration.source, hops: hops, server: server)
    }
}

/// A session engine stand-in that answers what it is told (the real one plugs in the same way).
struct FixedSessions: SessionChecker {
    let outcome: SessionOutcome
    func run(_ request: SessionRequest) throws -> SessionOutcome { outcome }
}

final class RunnerTests: XCTestCase {
    static let library = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../probes").standardized.path

    func run(_ yaml: String, hops: [SimulatedPath.Hop], server: SimulatedPath.Server = .mptcp,
             sessions: SessionChecker? = nil, vars: [String: String] = [:]) throws -> RunResult {
        let suite = try SuiteParser.parse(yaml: yaml, file: "t.yaml")
        return try run([suite], hops: hops, server: server, sessions: sessions, vars: vars)
    }

    func run(_ suites: [SuiteSpec], hops: [SimulatedPath.Hop], server: SimulatedPath.Server = .mptcp,
             sessions: SessionChecker? = nil, vars: [String: String] = [:]) throws -> RunResult {
        var v = Variables(["target": "198.18.9.2"])
        for (k, x) in vars { v[k] = x }
        let bound = try suites.map { ($0, try $0.bind(commandLine: v)) }
        var o = RunOptions()
        o.rate = 4000
        o.timeout = 0.5
        o.retries = 0
        o.maxTTL = 10
        return SuiteRunner(environment: SimulatedEnvironment(hops: hops, server: server, sessions: sessions), options: o).run(bound)
    }

    func outcomes(_ r: RunResult) -> [String: Outcome] {
        var out: [String: Outcome] = [:]
        for p in r.suites.flatMap(\.probes) {
            for x in p.expectations { out["\(p.probe.spec.name): \(x.summary)"] = x.outcome }
        }
        return out
    }

    let mpc = """
        probe: mpc
        send: "tcp(syn)/mss(1460)/sackok/ts/nop/ws(7)/mpcapable(v1)"
        expect:
          - option: mpcapable
            intact: destination
          - option: mpcapable
            intact: 2
          - finding: dest.mp-capable
          - no-finding: option.*
            before: 3
          - mss: {min: 1400}
          - destination: {reached: true, reply: synack, options: [mpcapable]}
        """

    func testCleanPathPassesEveryExpectationWithEvidence() throws {
        let r = try run(mpc, hops: [.router, .router, .router])
        XCTAssertFalse(r.failed)
        XCTAssertEqual(Set(outcomes(r).values), [.pass])
        let x = r.suites[0].probes[0].expectations
        XCTAssertEqual(x[0].evidence, "intact in every quote (the last from hop 3 (198.18.3.1)); destination answered synack at TTL 4")
        XCTAssertEqual(x[1].evidence, "intact in the quote of hop 2 (198.18.2.1)")
        XCTAssertEqual(x[2].evidence, "dest.mp-capable at hop 4")
        XCTAssertEqual(x[4].evidence, "lowest MSS 1460 (sent 1460) as sent, in 3 quotes")
    }

    func testStrippingBoxFailsTheOptionExpectationsAtTheRightHop() throws {
        let r = try run(mpc, hops: [.router, .stripMPTCP, .router, .router])
        let o = outcomes(r)
        XCTAssertTrue(r.failed)
        XCTAssertEqual(o["mpc: option mpcapable reaches the destination unmodified"], .fail)
        // The box strips in its forward hook: hop 2 itself still quotes the option intact.
        XCTAssertEqual(o["mpc: option mpcapable reaches hop 2 unmodified"], .pass)
        XCTAssertEqual(o["mpc: finding dest.mp-capable"], .fail)
        // The strip first shows at hop 3, which "before 3" excludes.
        XCTAssertEqual(o["mpc: no finding option.* before hop 3"], .pass)
        XCTAssertEqual(o["mpc: MSS not below 1400"], .pass)
        let x = r.suites[0].probes[0].expectations[0]
        XCTAssertEqual(x.evidence, "mpcapable nopped at hop 3 (198.18.3.1), intact at hop 2 (198.18.2.1): ~TCPOption(MP_CAPABLE→NOPs)")
    }

    func testMSSClampAndSeverity() throws {
        let yaml = """
            probe: clamp
            send: "tcp(syn)/mss(1460)"
            expect:
              - mss: {min: 1400}
              - mss: {min: "${low}"}
                severity: warn
                name: MSS above the warning level
            """
        let r = try run(yaml, hops: [.router, .clampMSS(1300), .router], vars: ["low": "1350"])
        let x = r.suites[0].probes[0].expectations
        XCTAssertEqual(x.map(\.outcome), [.fail, .warn])
        XCTAssertEqual(x[0].evidence, "lowest MSS 1300 (sent 1460) at hop 3 (198.18.3.1)")
        XCTAssertTrue(r.failed)

        // Only the warning fails: the run passes.
        let w = try run(yaml.replacingOccurrences(of: "  - mss: {min: 1400}\n", with: ""), hops: [.router, .clampMSS(1300), .router],
                        vars: ["low": "1350"])
        XCTAssertEqual(w.suites[0].probes[0].expectations.map(\.outcome), [.warn])
        XCTAssertFalse(w.failed)
    }

    func testProxyAndBlackholeFailTheDestinationExpectation() throws {
        let proxied = try run(mpc, hops: [.router, .proxy, .router])
        XCTAssertEqual(outcomes(proxied)["mpc: option mpcapable reaches the destination unmodified"], .fail)
        XCTAssertTrue(proxied.suites[0].probes[0].expectations[0].evidence.hasPrefix("path.proxy at hop 2"))

        let holed = try run(mpc, hops: [.router, .dropOption(30), .router])
        let x = holed.suites[0].probes[0].expectations
        XCTAssertEqual(x[0].outcome, .fail)
        XCTAssertTrue(x[0].evidence.hasPrefix("path.option-blackhole at hop 2"), x[0].evidence)
        XCTAssertEqual(x[5].outcome, .fail) // destination not reached
    }

    func testConnectChecksAreAnErrorWithoutTheSessionEngine() throws {
        let yaml = """
            suite: s
            probes:
              - probe: session
                connect: {join: true}
                expect:
                  - verdict: mptcp
                  - join: join.ok
                    severity: warn
            """
        let r = try run(yaml, hops: [.router])
        let x = r.suites[0].probes[0].expectations
        XCTAssertEqual(x.map(\.outcome), [.error, .error])
        XCTAssertEqual(x[0].evidence, SessionAvailability.unavailable)
        XCTAssertTrue(r.failed)

        // With an engine, its outcome is judged like any other.
        let ok = try run(yaml, hops: [.router], sessions: FixedSessions(outcome: SessionOutcome(verdict: "mptcp", joins: ["join.ok"])))
        XCTAssertEqual(ok.suites[0].probes[0].expectations.map(\.outcome), [.pass, .pass])
        let bad = try run(yaml, hops: [.router], sessions: FixedSessions(outcome: SessionOutcome(
            verdict: "fallback.syn-stripped", joins: ["join.syn-stripped"])))
        XCTAssertEqual(bad.suites[0].probes[0].expectations.map(\.outcome), [.fail, .warn])
        XCTAssertEqual(bad.suites[0].probes[0].expectations[0].evidence, "verdict fallback.syn-stripped")
    }

    func testShippedReadinessSuiteOnSimulatedPaths() throws {
        let suites = try SuiteParser.load(paths: [Self.library + "/suites/mptcp-readiness.yaml"])
        let clean = try run(suites, hops: [.router, .router, .router])
        let notPassing = outcomes(clean).filter { $0.value != .pass }
        // The simulated server answers without ECE: only the ECN warning.
        XCTAssertEqual(notPassing.keys.sorted(), ["ecn-setup-syn: the server accepts ECN (SYN/ACK with ECE)"])
        XCTAssertFalse(clean.failed)

        let stripped = try run(suites, hops: [.router, .stripMPTCP, .router])
        XCTAssertTrue(stripped.failed)
        // Every probe that sends an MPTCP option and checks it fails; the others do not.
        for p in stripped.suites.flatMap(\.probes) {
            let checksMPTCP = p.probe.spec.expectations.contains { e in
                if case .optionIntact(let o, _) = e.kind { return o.kind == 30 }
                if case .finding("dest.mp-capable", _, _) = e.kind { return true }
                return false
            }
            let sendsMPTCP = checksMPTCP && p.probe.expression?.options.contains { $0.kind == .mptcp } ?? false
            let failed = p.expectations.contains { $0.outcome == .fail || $0.outcome == .warn && $0.expectation.summary.contains("mptcp/12") }
            XCTAssertEqual(failed, sendsMPTCP, "\(p.probe.spec.name): \(p.expectations.map { "\($0.summary)=\($0.outcome)" })")
        }
    }

    func testProbesRunInParallelOnDistinctFlows() throws {
        let suites = try SuiteParser.load(paths: [Self.library + "/mptcp/dss.yaml"])
        let env = SimulatedEnvironment(hops: [.router, .router])
        var o = RunOptions()
        o.rate = 1000
        o.jobs = 3
        o.timeout = 0.5
        let r = SuiteRunner(environment: env, options: o).run(suites.map { ($0, try! $0.bind(commandLine: Variables(["target": "198.18.9.2"]))) })
        XCTAssertEqual(r.suites[0].probes.map(\.probe.spec.name), suites[0].probes.map(\.name)) // file order kept
        let ports = env.traces.map(\.sourcePort)
        XCTAssertEqual(Set(ports).count, ports.count)
        // Neither a probe's port nor its blackhole control's (port + 1) is shared.
        XCTAssertEqual(Set(ports.flatMap { [$0, $0 + 1] }).count, 2 * ports.count)
        // The rate is shared between the probes running at once.
        XCTAssertEqual(env.traces.map(\.rate), Array(repeating: 1000.0 / 3, count: ports.count))
    }

    func testUnresolvableTargetIsAnErrorPerProbe() throws {
        let r = try run(mpc, hops: [.router], vars: ["target": "not-an-address"])
        XCTAssertEqual(Set(r.suites[0].probes[0].expectations.map(\.outcome)), [.error])
        XCTAssertTrue(r.failed)
    }
}
