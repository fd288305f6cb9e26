import XCTest
import Foundation
import Wire
import Trace
import Report
@testable import Scan

/// The whole pipeline without privileges: list file → feed (fake resolver) → engine on the
/// simulated network → SQLite store → JSON Lines; resume, report and diff.
final class ScanRunnerTests: XCTestCase {
    let client = IPAddress("198.18.0.1")!
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "scan-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// 6 kinds × 20 hosts as addresses and a /28, names, repeats, bad lines, a blocked range.
    func writeList() throws -> (path: String, expected: [String: String]) {
        var lines = ["# scan test list", ""]
        var expected: [String: String] = [:]
        for kind in 1...6 {
            for host in 1...20 {
                let a = "198.18.\(kind).\(host)"
                lines.append(host % 5 == 0 ? "\(a):80 k\(kind)" : a)
                expected["\(a) 80"] = SimulatedNetwork.expectedVerdict(IPAddress(a)!)
            }
        }
        lines.append("198.18.1.32/28")          // 16 more MPTCP targets
        for h in 32..<48 { expected["198.18.1.\(h) 80"] = "mptcp" }
        lines += ["host-a.test", "host-b.test:80 named", "nx.test", "198.18.1.1", "198.18.1.1:80 dup"]
        expected["198.18.3.100 80"] = "fallback.not-mptcp-server"     // host-a.test
        expected["198.18.2.100 80"] = "fallback.syn-stripped"          // host-b.test
        expected["nx.test 80"] = "unresolved"
        lines += ["198.18.9.1:99999", "bad host name!", "198.18.7.0/24 # blocked below", "224.0.0.1"]
        let path = dir + "/list.txt"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try "198.18.7.0/24\n".write(toFile: dir + "/block.txt", atomically: true, encoding: .utf8)
        return (path, expected)
    }

    func settings(_ list: String) throws -> FeedSettings {
        var f = FeedSettings(inputs: [list])
        f.blocklist = try Blocklist(text: String(contentsOfFile: dir + "/block.txt", encoding: .utf8), origin: "block.txt")
        f.resolverTimeout = 2
        return f
    }

    static let names: [String: IPAddress] = ["host-a.test": IPAddress("198.18.3.100")!, "host-b.test": IPAddress("198.18.2.100")!]

    func makeRunner(_ feedSettings: FeedSettings, store: ScanStore?, output: JSONLinesWriter?, run: Int64,
                    network: SimulatedNetwork) throws -> ScanRunner {
        var t = TraceConfiguration(target: client, source: client, sourcePort: 1, destinationPort: 80)
        t.maxTTL = 5
        t.timeout = 0.3
        t.retries = 0
        t.rate = 1000
        let feed = try TargetFeed(settings: feedSettings, indices: try ListCount.count(feedSettings).indices) { name in
            guard let a = Self.names[name] else { throw ScanError.input("cannot resolve \(name): not found") }
            return [a]
        }
        var s = ScanRunner.Settings(engine: ScanEngine.Options(rate: 5000, concurrency: 40))
        s.batchSize = 16
        return try ScanRunner(settings: s, network: network, checks: [TraceCheck(template: t, seed: 9)], feed: feed,
                              store: store, output: output, runID: run, sourceAddress: { _ in self.client }, log: { _ in })
    }

    func readJSONL(_ path: String) throws -> [JSON] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            // Only the fields the test needs: target, port, verdict/status, run.
            let s = String(line)
            func field(_ k: String) -> String? {
                guard let r = s.range(of: "\"\(k)\":") else { return nil }
                let rest = s[r.upperBound...]
                if rest.hasPrefix("\"") { return String(rest.dropFirst().prefix { $0 != "\"" }) }
                return String(rest.prefix { $0 != "," && $0 != "}" })
            }
            return .object([("run", .string(field("run") ?? "")), ("target", .string(field("target") ?? "")),
                            ("port", .string(field("port") ?? "")), ("verdict", .string(field("verdict") ?? field("status") ?? ""))])
        }
    }

    func testAFullRunRecordsEveryTargetOnceWithTheRightVerdict() throws {
        let (list, expected) = try writeList()
        let store = try ScanStore(path: dir + "/scan.db")
        let run = try store.beginRun(parameters: ["test": 1], vantage: ["host": "sim"], now: 0)
        let out = try JSONLinesWriter(path: dir + "/out.jsonl")
        let runner = try makeRunner(try settings(list), store: store, output: out, run: run, network: SimulatedNetwork(client: client))
        let summary = try runner.run(total: nil, shouldStop: { false }, progress: nil)
        XCTAssertEqual(summary.outcome, .partial)
        XCTAssertEqual(summary.badLines, 2)
        XCTAssertEqual(summary.blocked, 256 + 1)
        XCTAssertEqual(summary.duplicates, 2)
        XCTAssertEqual(summary.unresolved, 1)
        XCTAssertEqual(summary.recorded, expected.count)

        let lines = try readJSONL(dir + "/out.jsonl")
        XCTAssertEqual(lines.count, expected.count)
        var got: [String: String] = [:]
        for l in lines {
            guard case .string(let t)? = l["target"], case .string(let p)? = l["port"], case .string(let v)? = l["verdict"] else { continue }
            XCTAssertNil(got["\(t) \(p)"], "recorded twice: \(t) \(p)")
            got["\(t) \(p)"] = v
        }
        XCTAssertEqual(got, expected)
        XCTAssertEqual(try store.recordCount(run: run), expected.count)

        let report = try ScanRunReport.load(store, run: run)
        XCTAssertEqual(report.total, expected.count)
        XCTAssertEqual(report.verdicts.first { $0.0 == "fallback.syn-stripped" }?.1, 21)
        XCTAssertEqual(report.hops.first?.address, "198.19.0.2")
        XCTAssertEqual(report.hops.first?.finding, "option.nopped")
        XCTAssertEqual(report.hops.first?.targets, 21)
        XCTAssertTrue(report.text.contains("fallback.syn-dropped"))
    }

    func testAKilledRunResumesWithNothingLostAndNothingTwice() throws {
        let (list, expected) = try writeList()
        let dbPath = dir + "/scan.db", outPath = dir + "/out.jsonl"
        var run: Int64 = 0
        do {
            let store = try ScanStore(path: dbPath)
            run = try store.beginRun(parameters: [:], vantage: [:], now: 0)
            let net = SimulatedNetwork(client: client)
            let runner = try makeRunner(try settings(list), store: store, output: try JSONLinesWriter(path: outPath), run: run,
                                        network: net)
            // Stopped part-way, with targets in flight.
            let s = try runner.run(total: nil, shouldStop: { net.sendTimes.count > 300 }, progress: nil)
            XCTAssertEqual(s.outcome, .interrupted)
            XCTAssertGreaterThan(s.recorded, 0)
            XCTAssertLessThan(s.recorded, expected.count)
        }
        // A kill between the commit and the write: the store has a record the file lacks, and
        // the file ends with half a line.
        let extra = try ScanStore(path: dbPath)
        let before = try extra.recordCount(run: run)

        _ = try extra.commit([ScanRecord(run: run, target: "198.18.1.19", port: 80, origin: "x", status: .ok, verdict: "mptcp",
                                         started: 0, finished: 0)])
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: outPath))
        handle.seekToEndOfFile()
        handle.write(Data("{\"schema\":\"mptracebox.scan/1\",\"run\":\(run),\"tar".utf8))
        handle.closeFile()
        XCTAssertEqual(try JSONLinesWriter.reconcile(path: outPath, run: run, store: extra), try extra.recordCount(run: run) - before)
        XCTAssertEqual(try readJSONL(outPath).count, try extra.recordCount(run: run))

        let runner = try makeRunner(try settings(list), store: extra, output: try JSONLinesWriter(path: outPath), run: run,
                                    network: SimulatedNetwork(client: client))
        let s = try runner.run(total: nil, shouldStop: { false }, progress: nil)
        XCTAssertGreaterThan(s.alreadyRecorded, 0)
        let lines = try readJSONL(outPath)
        var seen = Set<String>()
        for l in lines {
            guard case .string(let t)? = l["target"], case .string(let p)? = l["port"] else { continue }
            XCTAssertTrue(seen.insert("\(t) \(p)").inserted, "twice in the JSONL: \(t) \(p)")
        }
        XCTAssertEqual(seen, Set(expected.keys))
        XCTAssertEqual(try extra.recordCount(run: run), expected.count)
    }

    func testDiffShowsWhatChangedBetweenRuns() throws {
        let store = try ScanStore(path: dir + "/scan.db")
        let a = try store.beginRun(parameters: [:], vantage: [:], now: 0)
        let b = try store.beginRun(parameters: [:], vantage: [:], now: 1)
        func rec(_ run: Int64, _ t: String, _ v: String, _ f: [String]) -> ScanRecord {
            ScanRecord(run: run, target: t, port: 80, origin: "x", status: .ok, verdict: v, findings: f, started: 0, finished: 0)
        }
        _ = try store.commit([rec(a, "198.18.1.1", "mptcp", ["dest.mp-capable"]), rec(a, "198.18.1.2", "mptcp", ["dest.mp-capable"]),
                              rec(a, "198.18.1.3", "mptcp", [])])
        _ = try store.commit([rec(b, "198.18.1.1", "mptcp", ["dest.mp-capable"]),
                              rec(b, "198.18.1.2", "fallback.syn-stripped", ["option.nopped", "dest.no-mp-capable"]),
                              rec(b, "198.18.1.4", "timeout", [])])
        let d = try ScanRunDiff.load(store, a, b)
        XCTAssertEqual(d.common, 2)
        XCTAssertEqual(d.changes.map { "\($0.target) \($0.kind)" }, ["198.18.1.2 changed", "198.18.1.3 only-a", "198.18.1.4 only-b"])
        XCTAssertTrue(d.text.contains("198.18.1.2:80  mptcp → fallback.syn-stripped"))
        XCTAssertEqual(d.json["changes"].flatMap { if case .array(let x) = $0 { return x.count }; return nil }, 3)
        XCTAssertThrowsError(try ScanRunDiff.load(store, a, 99))
        // The unique key: the same target twice in a run is stored once.
        XCTAssertEqual(try store.commit([rec(a, "198.18.1.1", "timeout", [])]).count, 0)
    }
}
