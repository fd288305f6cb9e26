import XCTest
import Wire
import Probe
import Diff
@testable import Trace

final class TraceEngineTests: XCTestCase {
    let client4 = IPAddress("198.18.0.1")!, server4 = IPAddress("198.18.9.2")!
    let client6 = IPAddress("2001:db8::1")!, server6 = IPAddress("2001:db8:9::2")!

    func trace(_ hops: [SimulatedPath.Hop], server: SimulatedPath.Server = .mptcp, v6: Bool = false,
               configure: (inout TraceConfiguration) -> Void = { _ in }) throws -> (TraceResult, SimulatedPath) {
        let path = SimulatedPath(client: v6 ? client6 : client4, hops: hops, server: server)
        var config = TraceConfiguration(target: v6 ? server6 : server4, source: v6 ? client6 : client4,
                                        sourcePort: 40000, destinationPort: 80)
        config.rate = 1000
        configure(&config)
        return (try TraceEngine(configuration: config, network: path).run(), path)
    }

    func testCleanPathReachesTheServerWithNoInterference() throws {
        let (r, _) = try trace([.router, .router, .router])
        XCTAssertEqual(r.hops.map(\.reply), [.timeExceeded, .timeExceeded, .timeExceeded, .synack])
        XCTAssertTrue(r.destination.reached)
        XCTAssertEqual(r.destination.ttl, 4)
        XCTAssertEqual(r.findings.map(\.id), [.destMPCapable])
        XCTAssertEqual(r.stopReason, .completed)
        XCTAssertEqual(r.hops.map { $0.diff?.kind }, [.full, .full, .full, nil])
    }

    func testStripInTheForwardHookShowsAtTheNextHop() throws {
        let (r, _) = try trace([.router, .stripMPTCP, .router, .router])
        let nop = r.findings.first { $0.id == .optionNopped }
        XCTAssertEqual(nop?.hop, 3)
        XCTAssertEqual(nop?.after, 2)
        XCTAssertEqual(nop?.detail.kind, 30)
        XCTAssertTrue(r.findings.contains { $0.id == .destNoMPCapable })
    }

    func testRFC792QuotesAndSilentRoutersAreNotMistakenForStripping() throws {
        let (r, _) = try trace([.rfc792, .silent, .clampMSS(1300), .router])
        XCTAssertEqual(r.hops.map(\.reply), [.timeExceeded, .none, .timeExceeded, .timeExceeded, .synack])
        XCTAssertEqual(r.hops[0].diff?.kind, .rfc792)
        XCTAssertFalse(r.findings.contains { $0.id == .optionRemoved })
        let mss = r.findings.first { $0.id == .mssChanged }
        XCTAssertEqual(mss?.hop, 4)
        XCTAssertEqual(mss?.after, 3)
        XCTAssertEqual(mss?.detail.received, .number(1300))
        XCTAssertTrue(r.findings.contains { $0.id == .quotePartial && $0.hop == 1 })
    }

    func testParallelCostsOneTimeoutForASilentHopAndSequentialCostsMore() throws {
        let hops: [SimulatedPath.Hop] = [.router, .router, .router, .silent, .router, .router, .router, .router, .router]
        let (p, _) = try trace(hops) { $0.timeout = 1; $0.retries = 2 }
        let (s, _) = try trace(hops) { $0.timeout = 1; $0.retries = 2; $0.sequential = true }
        XCTAssertTrue(p.destination.reached)
        XCTAssertTrue(s.destination.reached)
        XCTAssertEqual(p.hops.map(\.reply), s.hops.map(\.reply))
        // Virtual time: one timeout (+ path RTT and the ICMP echo check) vs three timeouts for the silent hop.
        XCTAssertLessThan(p.durationSeconds, 1.1)
        XCTAssertGreaterThan(s.durationSeconds, 3.0)
        XCTAssertEqual(p.hops[3].probes, 3) // retried inside the window
    }

    func testTerminatingProxyIsFoundWithAnEchoAtTheSameTTL() throws {
        let (r, _) = try trace([.router, .proxy, .router, .router])
        XCTAssertEqual(r.destination.ttl, 2)
        let proxy = r.findings.first { $0.id == .pathProxy }
        XCTAssertEqual(proxy?.hop, 2)
        XCTAssertTrue(r.findings.contains { $0.id == .destNoMPCapable })
    }

    func testEchoedMPCapableIsNotAServer() throws {
        let (r, _) = try trace([.router], server: .echo)
        XCTAssertEqual(r.findings.map(\.id), [.destMPCapableEchoed])
    }

    func testOptionBlackholeIsConfirmedWithoutTheOption() throws {
        let (r, _) = try trace([.router, .dropOption(30), .router]) { $0.timeout = 0.5; $0.retries = 0; $0.maxTTL = 6 }
        XCTAssertFalse(r.destination.reached)
        let bh = r.findings.first { $0.id == .optionBlackhole }
        XCTAssertEqual(bh?.hop, 2)
        XCTAssertEqual(bh?.after, 1)
        XCTAssertEqual(bh?.detail.kind, 30)
    }

    func testATransientOutageIsNotCalledABlackhole() throws {
        // Hop 2 drops the first trace's probes (6 TTLs past hop 1), then recovers: the control
        // goes through, and so does the confirmation run of the original probe.
        let (r, _) = try trace([.router, .dropFirst(5), .router]) { $0.timeout = 0.5; $0.retries = 0; $0.maxTTL = 6 }
        XCTAssertFalse(r.destination.reached)
        XCTAssertFalse(r.findings.contains { $0.id == .optionBlackhole })
    }

    func testIPv6Path() throws {
        let (r, _) = try trace([.router, .stripMPTCP, .router], v6: true)
        XCTAssertTrue(r.destination.reached)
        XCTAssertEqual(r.findings.first { $0.id == .optionNopped }?.hop, 3)
        XCTAssertEqual(r.family, "ipv6")
    }

    func testProbesBeyondTheDestinationAreNotSentOnceItIsKnown() throws {
        let (r, path) = try trace([.router]) { $0.rate = 10; $0.maxTTL = 30 }
        XCTAssertTrue(r.destination.reached)
        // Paced at 10/s, the SYN/ACK for TTL 2 arrives long before TTL 30 would be sent.
        XCTAssertLessThan(path.sentCount, 5)
    }

    func testInvalidConfigurationIsRejectedBeforeSending() {
        let path = SimulatedPath(client: client4, hops: [.router])
        var c = TraceConfiguration(target: server4, source: client4, sourcePort: 1, destinationPort: 2)
        c.minTTL = 10; c.maxTTL = 5
        XCTAssertThrowsError(try TraceEngine(configuration: c, network: path).run())
        XCTAssertEqual(path.sentCount, 0)
        c = TraceConfiguration(target: server6, source: client4, sourcePort: 1, destinationPort: 2)
        XCTAssertThrowsError(try TraceEngine(configuration: c, network: path).run())
    }
}
