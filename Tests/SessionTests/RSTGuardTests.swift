import Foundation
import XCTest
import TestSupport
import Lab
@testable import NetIO

/// The kernel-RST guard: what it drops, what it lets through, and that it never outlives its run.
final class RSTGuardTests: XCTestCase {
    func testRulesetDropsOnlyUnmarkedRSTsOfTheGivenPorts() {
        let text = RSTGuard.ruleset(table: "mptracebox_guard_42", ports: [4005, 4000, 4001], mark: 0x4d54)
        XCTAssertTrue(text.contains("table inet mptracebox_guard_42"))
        XCTAssertTrue(text.contains("type filter hook output"))
        // Marked packets are accepted before the drop rule sees them.
        let accept = text.range(of: "meta mark 0x4d54 accept")
        let drop = text.range(of: "tcp sport { 4000-4001, 4005 } tcp flags rst drop")
        XCTAssertNotNil(accept)
        XCTAssertNotNil(drop)
        if let a = accept, let d = drop { XCTAssertLessThan(a.lowerBound, d.lowerBound) }
    }

    /// Two guards of one process (a suite's parallel connect checks) keep their own tables:
    /// removing one leaves the other's ports guarded. (They shared one table per process, so the
    /// second replaced the first and the kernel reset the first session.)
    func testGuardsOfOneProcessDoNotReplaceEachOther() throws {
        try TestEnvironment.requireRoot()
        try TestEnvironment.requireTool("nft")
        let ns = "mtbguard-\(getpid())"
        _ = try TestShell.check(["ip", "netns", "add", ns])
        defer { _ = try? TestShell.run(["ip", "netns", "del", ns]) }
        func tables() throws -> [String] {
            try TestShell.check(["ip", "netns", "exec", ns, "nft", "list", "tables", "inet"]).split(separator: "\n")
                .map { String($0.split(separator: " ").last ?? "") }.filter { $0.hasPrefix(RSTGuard.tablePrefix) }
        }
        try NetworkNamespace.inside(ns) {
            let a = try RSTGuard(ports: [61000, 61001])
            let b = try RSTGuard(ports: [62000])
            XCTAssertNotEqual(a.table, b.table)
            XCTAssertEqual(Set(try tables()), [a.table, b.table])
            XCTAssertEqual(RSTGuard.owner(ofTable: a.table), getpid())
            b.remove()
            XCTAssertEqual(try tables(), [a.table], "removing one guard left the other")
            let rules = try TestShell.check(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", a.table])
            XCTAssertTrue(rules.contains("61000-61001"), rules)
            a.remove()
            XCTAssertEqual(try tables(), [])
        }
        XCTAssertEqual(RSTGuard.owner(ofTable: "mptracebox_guard_42"), 42, "tables of earlier versions are still swept")
        XCTAssertEqual(RSTGuard.owner(ofTable: "mptracebox_guard_42_7"), 42)
        XCTAssertNil(RSTGuard.owner(ofTable: "mptracebox_guard_x_1"))
        XCTAssertNil(RSTGuard.owner(ofTable: "other_42"))
    }

    /// A scan guards one range per port block: overlapping and adjacent ranges are joined, since
    /// nft refuses overlapping elements of a set.
    func testRangesAreSortedAndJoined() {
        XCTAssertEqual(RSTGuard.merged([10...12, 1...3, 4...4, 11...20, 30...30]), [1...4, 10...20, 30...30])
        XCTAssertEqual(RSTGuard.merged([]), [])
        XCTAssertEqual(RSTGuard.merged([65535...65535, 0...65535]), [0...65535])
    }

    /// Without the guard the client kernel resets the crafted connection (a RST leaves the client
    /// and the server sees a reset); with it, no RST crosses the path and the session completes.
    func testGuardKeepsTheKernelFromResettingTheSession() throws {
        let lab = try SessionLab(self, hops: ["router"])
        try TestEnvironment.requireTool("tcpdump")
        func rstsSeenAtHop(_ args: [String]) throws -> (Int, [String: Any]) {
            let pcap = "\(lab.lab.stateDirectory)/hop-\(UUID().uuidString.prefix(6)).pcap"
            let dump = try lab.start(.hop(path: 0, index: 1), ["tcpdump", "-i", "left", "-U", "-w", pcap, "tcp[tcpflags] & tcp-rst != 0"])
            usleep(700_000)
            let (doc, _, _) = try lab.connect(args + ["--no-join", "--no-add-addr", "--retries", "1"])
            usleep(300_000)
            kill(dump.processIdentifier, SIGINT)
            dump.waitUntilExit()
            let count = try lab.lab.run(.client, ["tcpdump", "-r", pcap]).stdout.split(separator: "\n").count
            return (count, doc)
        }
        let (guarded, doc) = try rstsSeenAtHop([])
        XCTAssertEqual(guarded, 0, "no RST left the client")
        XCTAssertEqual(doc.verdict, "mptcp")
        let (unguarded, doc2) = try rstsSeenAtHop(["--no-rst-guard"])
        XCTAssertGreaterThan(unguarded, 0, "the kernel's RST left the client")
        XCTAssertNotEqual(doc2.verdict, "mptcp")
    }

    func testSIGTERMRemovesTheGuardAndSIGKILLLeftoversAreSweptByTheNextRun() throws {
        // A server behind a box that drops MP_CAPABLE SYNs keeps the session waiting long enough.
        let lab = try SessionLab(self, hops: ["router", "drop:30@syn"])
        func tables() throws -> [String] {
            try lab.lab.check(.client, ["nft", "list", "tables", "inet"]).split(separator: "\n")
                .map(String.init).filter { $0.contains("mptracebox_guard_") }
        }
        func startSlowSession() throws -> Process {
            let p = try lab.start(.client, [lab.binary, "connect", "--timeout", "5", "--retries", "3", lab.server])
            for _ in 0..<50 where try tables().isEmpty { usleep(100_000) }
            return p
        }
        var p = try startSlowSession()
        XCTAssertEqual(try tables().count, 1, "the guard is installed while the session runs")
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 128 + SIGTERM)
        XCTAssertEqual(try tables(), [], "SIGTERM removed the guard")

        p = try startSlowSession()
        let pid = p.processIdentifier
        kill(pid, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(try tables().count, 1, "a SIGKILLed run leaves its table behind")
        XCTAssertTrue(try tables().first?.contains("mptracebox_guard_\(pid)") ?? false)
        // The next run sweeps it (its owner is dead) and removes its own on exit.
        let r = try lab.lab.run(.client, [lab.binary, "connect", "--timeout", "0.3", "--retries", "0", "--no-join", "--no-add-addr", "--no-inspect", lab.server])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try tables(), [], "nothing is left after the next run")
    }
}
