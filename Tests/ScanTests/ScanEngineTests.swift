import XCTest
import Wire
import Trace
import PacketIO
@testable import Scan

final class ScanEngineTests: XCTestCase {
    let client = IPAddress("198.18.0.1")!

    func traceCheck() -> TraceCheck {
        var t = TraceConfiguration(target: client, source: client, sourcePort: 1, destinationPort: 80)
        t.maxTTL = 6
        t.timeout = 0.5
        t.retries = 1
        t.rate = 1000
        return TraceCheck(template: t, seed: 1)
    }

    func run(_ targets: [ScanTarget], rate: Double, concurrency: Int) throws -> ([ScanOutcome], SimulatedNetwork, ScanCounters) {
        let net = SimulatedNetwork(client: client)
        let engine = try ScanEngine(network: net, checks: [traceCheck()],
                                    options: ScanEngine.Options(rate: rate, concurrency: concurrency))
        var queue = targets[...]
        var outcomes: [ScanOutcome] = []
        try engine.run(source: {
            guard let t = queue.popFirst() else { return .exhausted }
            return .target(t, source: self.client)
        }, complete: { outcomes.append($0) })
        return (outcomes, net, engine.counters)
    }

    func testManyConcurrentTracesShareOneNetworkAndEachGetsItsOwnAnswer() throws {
        var targets: [ScanTarget] = []
        for kind in 1...7 {
            for host in 1...60 {
                targets.append(ScanTarget(address: .v4(IPv4Address(198, 18, UInt8(kind), UInt8(host))), port: 80, origin: "t:\(kind)-\(host)"))
            }
        }
        let (outcomes, net, counters) = try run(targets, rate: 2000, concurrency: 150)
        XCTAssertEqual(outcomes.count, targets.count)
        XCTAssertEqual(Set(outcomes.map(\.target)), Set(targets))
        for o in outcomes {
            let s = try XCTUnwrap(o.checks.first?.summary, "\(o.target.address): \(o.checks.first?.error ?? "")")
            XCTAssertEqual(s.verdict, SimulatedNetwork.expectedVerdict(o.target.address), "\(o.target.address)")
            if o.target.address.bytes[2] == 2 {
                XCTAssertTrue(s.interference.contains { $0.finding == "option.nopped" && $0.ttl == 2 && $0.address == "198.19.0.2" }, "\(s)")
            }
            XCTAssertEqual(o.checks.first?.document?["target"], .string(o.target.address.description))
        }
        // Late answers (to TTLs past the destination, to retries) may come after their task ended.
        XCTAssertLessThan(counters.packetsUnrouted, counters.packetsReceived / 4)
        XCTAssertEqual(counters.packetsSent, net.sendTimes.count)
        // The global rate holds in every one-second window (a burst of 10 ms' worth allowed).
        let times = net.sendTimes
        var j = 0, worst = 0
        for i in times.indices {
            while times[j] < times[i] - 1 { j += 1 }
            worst = max(worst, i - j + 1)
        }
        XCTAssertLessThanOrEqual(worst, 2000 + 21)
        // And the scan used it: the whole run is paced, not idle.
        let span = times.last! - times.first!
        XCTAssertGreaterThan(Double(times.count) / span, 2000 * 0.5)
    }

    func testRateIsHonouredExactlyOverALongRun() throws {
        var targets: [ScanTarget] = []
        for i in 0..<400 {
            let host = UInt8(i % 250 + 1)
            targets.append(ScanTarget(address: .v4(IPv4Address(198, 18, 1, host)), port: UInt16(80 + i / 250), origin: "t"))
        }
        let (outcomes, net, _) = try run(targets, rate: 500, concurrency: 400)
        XCTAssertEqual(outcomes.count, 400)
        let times = net.sendTimes
        let achieved = Double(times.count - 1) / (times.last! - times.first!)
        XCTAssertLessThanOrEqual(achieved, 500 * 1.01)
        XCTAssertGreaterThan(achieved, 500 * 0.95)
    }

    /// Far more targets in flight than the rate serves at once: waiting for the shared rate must
    /// not pass for silence (no trace may give up while its probes wait for tokens).
    func testContentionForTheRateDoesNotChangeVerdicts() throws {
        var targets: [ScanTarget] = []
        for kind in 1...6 {
            for host in 1...50 { targets.append(ScanTarget(address: .v4(IPv4Address(198, 18, UInt8(kind), UInt8(host))), port: 80, origin: "t")) }
        }
        let (outcomes, _, _) = try run(targets, rate: 200, concurrency: 300)
        XCTAssertEqual(outcomes.count, 300)
        let wrong = outcomes.filter { $0.checks.first?.summary?.verdict != SimulatedNetwork.expectedVerdict($0.target.address) }
        XCTAssertEqual(wrong.map { "\($0.target.address) \($0.checks.first?.summary?.verdict ?? "-")" }, [])
    }

    func testConcurrencyNeedsEnoughLocalPorts() {
        let net = SimulatedNetwork(client: client)
        XCTAssertThrowsError(try ScanEngine(network: net, checks: [traceCheck()],
                                            options: ScanEngine.Options(rate: 10, concurrency: 10, localPorts: 61000...61009)))
        XCTAssertNoThrow(try ScanEngine(network: net, checks: [traceCheck()],
                                        options: ScanEngine.Options(rate: 10, concurrency: 5, localPorts: 61000...61009)))
    }

    func testCheckListsAreParsedAndSessionChecksKnown() throws {
        XCTAssertEqual(try CheckName.parseList("trace,connect"), [.trace, .connect])
        XCTAssertEqual(try CheckName.parseList(" join ,trace,join"), [.join, .trace])
        XCTAssertTrue(CheckName.connect.isSession)
        XCTAssertTrue(CheckName.addAddr.isSession)
        XCTAssertFalse(CheckName.trace.isSession)
        XCTAssertThrowsError(try CheckName.parseList("trace,bogus"))
        XCTAssertThrowsError(try CheckName.parseList(""))
    }

    func testWakeHeapOrdersByTimeThenInsertion() {
        var h = WakeHeap()
        var rng = SplitMix64(seed: 3)
        for i in 0..<500 { h.push(WakeHeap.Entry(time: Double(rng.next() % 50), slot: i, generation: 0)) }
        var last = (-1.0, -1)
        var seen = 0
        while let e = h.pop() {
            XCTAssertTrue(e.time > last.0 || (e.time == last.0 && e.slot > last.1))
            last = (e.time, e.slot)
            seen += 1
        }
        XCTAssertEqual(seen, 500)
    }
}
