import XCTest
import Wire
import PacketIO
import Report
@testable import Session
@testable import Scan

/// Sessions as scan tasks: the engine runs as a coroutine of the scan's dispatcher, over the
/// dispatcher's one network and token bucket, and ends the same as when it runs on its own.
final class ScanSessionCheckTests: XCTestCase {
    let server = IPAddress("198.18.1.2")!
    let client = IPAddress("198.18.0.1")!

    func template(join: Bool = true, addAddress: Bool = true) -> SessionConfiguration {
        var c = SessionConfiguration(target: client, source: client, sourcePort: 1, destinationPort: 80)
        c.inspectPath = false
        c.timeout = 0.2
        c.retries = 2
        c.localKey = 0x0102_0304_0506_0708
        c.initialSequence = 1000
        c.join = join
        c.addAddress = addAddress
        return c
    }

    func scan(_ net: SimulatedServer, checks: [ScanCheck], targets: Int = 1, rate: Double = 1000,
              stopAfterSends: Int? = nil) throws -> (outcomes: [ScanOutcome], engine: ScanEngine) {
        let engine = try ScanEngine(network: net, checks: checks, options: ScanEngine.Options(rate: rate, concurrency: 1, localPorts: 50000...50099))
        var left = targets
        var outcomes: [ScanOutcome] = []
        try engine.run(source: {
            guard left > 0 else { return .exhausted }
            left -= 1
            return .target(ScanTarget(address: self.server, port: 80, origin: "t:\(left)"), source: self.client)
        }, shouldStop: { stopAfterSends.map { engine.counters.packetsSent >= $0 } ?? false },
           complete: { outcomes.append($0) })
        return (outcomes, engine)
    }

    func testASessionCheckEndsLikeTheSessionRunOnItsOwn() throws {
        let alone = SimulatedServer(.mptcp)
        var c = template()
        c.target = server
        c.sourcePort = 50000
        c.joinSourcePort = 50001
        let direct = try SessionEngine(configuration: c, network: alone).run()
        let directVerdicts = SessionClassifier.classify(direct)

        let net = SimulatedServer(.mptcp)
        let (outcomes, engine) = try scan(net, checks: [SessionCheck(template: template())])
        let o = try XCTUnwrap(outcomes.first)
        XCTAssertNil(o.checks[0].error)
        let s = try XCTUnwrap(o.checks[0].summary)
        XCTAssertEqual(s.verdict, "mptcp")
        XCTAssertEqual(s.findings, ["join.ok", "add-addr.ok"])
        XCTAssertEqual(s.verdict, directVerdicts.session.id)
        // What the server checked on its own: all data in order, checksums and HMACs good.
        XCTAssertTrue(net.received == c.payload)
        XCTAssertEqual(net.checksumFailures, 0)
        XCTAssertEqual(net.joinHMACOK, true)
        XCTAssertEqual(net.addAddrReceived, 1)
        XCTAssertTrue(net.dataFinReceived)
        // The same packets as the session run alone, all through the dispatcher's network.
        XCTAssertEqual(net.sent.count, alone.sent.count)
        XCTAssertEqual(engine.counters.packetsSent, net.sent.count)
        XCTAssertEqual(net.sent.map { $0.tcp?.header.flags }, alone.sent.map { $0.tcp?.header.flags })
        let doc = try XCTUnwrap(o.checks[0].document)
        XCTAssertEqual(doc["schema"], .string(SessionReport.schema))
        XCTAssertEqual(doc["verdict"], .string("mptcp"))
        // The record takes the session's verdict over the trace's.
        let record = ScanRecord(run: 1, outcome: o)
        XCTAssertEqual(record.verdict, "mptcp")
        XCTAssertEqual(record.checks.map(\.0), ["connect"])
    }

    func testFallbacksAndSilenceGetTheSessionsVerdicts() throws {
        for (behaviour, verdict) in [(SimulatedServer.Behaviour.plain, "fallback.not-mptcp-server"), (.silent, "timeout"),
                                     (.stripSynAck, "fallback.synack-stripped")] {
            let (outcomes, _) = try scan(SimulatedServer(behaviour), checks: [SessionCheck(template: template(join: false, addAddress: false))])
            XCTAssertEqual(outcomes.first?.checks[0].summary?.verdict, verdict, "\(behaviour)")
            XCTAssertEqual(outcomes.first?.checks[0].summary?.findings, [], "\(behaviour)")
        }
    }

    /// Session packets wait for tokens like every other packet of the scan.
    func testSessionPacketsKeepTheScansRate() throws {
        let net = SimulatedServer(.mptcp)
        let rate = 20.0
        let (outcomes, engine) = try scan(net, checks: [SessionCheck(template: template())], targets: 2, rate: rate)
        XCTAssertEqual(outcomes.compactMap { $0.checks[0].summary?.verdict }.count, 2)
        let c = engine.counters
        XCTAssertGreaterThan(c.packetsSent, 30)
        XCTAssertLessThanOrEqual(c.sendRate, rate * 1.05, "sent \(c.packetsSent) packets at \(c.sendRate)/s")
    }

    /// A scan that stops abandons the session in flight: its coroutine ends instead of staying parked.
    func testAStoppedScanEndsTheSessionsInFlight() throws {
        let net = SimulatedServer(.mptcp)
        var c = template()
        c.target = server
        c.sourcePort = 50000
        c.joinSourcePort = 50001
        weak var finished: SessionCheckTask?
        do {
            let task = SessionCheckTask(configuration: c)
            finished = task
            let first = try task.step(now: net.now(), maySend: true)
            guard case .send(let syn) = first else { return XCTFail("the session starts with its SYN, got \(first)") }
            try net.send(syn)
            XCTAssertFalse(task.hasEnded)
            task.cancel()
            XCTAssertTrue(task.hasEnded)
            XCTAssertThrowsError(try task.step(now: net.now(), maySend: true))
            XCTAssertNil(task.summary)
        }
        // The coroutine ended and released the task (nothing else holds it).
        XCTAssertNil(finished, "the session's coroutine still holds its task")

        let (outcomes, engine) = try scan(net, checks: [SessionCheck(template: template())], stopAfterSends: 3)
        XCTAssertEqual(outcomes.count, 0)
        XCTAssertEqual(engine.counters.packetsSent, 3)
    }

    func testEveryPortOfASessionCheckIsInItsGuardedRanges() throws {
        let net = SimulatedServer(.mptcp)
        var trace = template()
        trace.target = server
        let engine = try ScanEngine(network: net, checks: [FixedPortsCheck(), SessionCheck(template: template())],
                                    options: ScanEngine.Options(rate: 100, concurrency: 2, localPorts: 50000...50011))
        XCTAssertEqual(engine.portRanges(ofCheck: 1), [50002...50004, 50007...50009])
        XCTAssertEqual(engine.portRanges(ofCheck: 0), [50000...50001, 50005...50006])
        let task = try SessionCheck(template: template()).makeTask(target: server, source: client, port: 80, firstLocalPort: 50007)
        XCTAssertEqual(Set(task.localPorts), [50007, 50008, 50009])
    }
}

extension ScanSessionCheckTests {
    /// Where the scan report says interference shows: the SYN's copies explain the session's
    /// verdict, the ADD_ADDR's copies the ADD_ADDR outcome.
    func testInterferenceNamesTheOutcomeEachInspectionExplains() {
        var c = template()
        c.target = server
        var r = SessionRecord(configuration: c)
        let router = IPAddress("198.18.1.2")!
        r.facts.inspections = [
            Inspection(segment: "syn", hops: [HopView(ttl: 1, router: IPAddress("198.18.0.2"), packet: 3, state: .intact),
                                              HopView(ttl: 2, router: router, packet: 4, state: .nopped)]),
            Inspection(segment: "add-addr", hops: [HopView(ttl: 1, router: nil, packet: nil, state: .unknown),
                                                   HopView(ttl: 2, router: nil, packet: 9, state: .removed)]),
        ]
        var v = SessionClassifier.classify(r)
        v.session = Verdict("fallback.syn-stripped")
        v.addAddress = Verdict("add-addr.stripped")
        let s = SessionSummary.summary(r, v)
        XCTAssertEqual(s.interference.map(\.finding), ["fallback.syn-stripped", "add-addr.stripped"])
        XCTAssertEqual(s.interference.map(\.ttl), [2, 2])
        XCTAssertEqual(s.interference.map(\.address), ["198.18.1.2", nil])
        XCTAssertEqual(s.findings, ["add-addr.stripped"] + (v.join.map { [$0.id] } ?? []))
    }
}

/// A check that takes two ports and does nothing (only its port layout matters here).
struct FixedPortsCheck: ScanCheck {
    var name: String { "fixed" }
    var portsPerTarget: Int { 2 }
    func makeTask(target: IPAddress, source: IPAddress, port: UInt16, firstLocalPort: UInt16) throws -> ScanTask {
        throw ScanError.usage("not run")
    }
}
