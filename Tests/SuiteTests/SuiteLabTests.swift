import XCTest
import Foundation
import TestSupport
import Lab
@testable import Suite

/// The shipped readiness suite in real labs: `mptracebox suite run` in the client namespace,
/// through Linux routers and nftables middleboxes, to a kernel MPTCP server.
final class SuiteLabTests: XCTestCase {
    static let library = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../probes").standardized.path
    static let readiness = library + "/suites/mptcp-readiness.yaml"

    func binary() throws -> String {
        do { return try LabBinary.path() } catch {
            try TestEnvironment.require(false, "the mptracebox binary is built (swift build): \(error)")
            throw error
        }
    }

    func makeLab(hops: [String], servers: [String] = ["mptcp:80"]) throws -> Lab {
        try TestEnvironment.requireRoot()
        for t in ["nft", "ethtool", "python3"] { try TestEnvironment.requireTool(t) }
        let chars = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let name = "s" + String((0..<7).map { _ in chars.randomElement()! })
        let lab = try Lab.up(try LabSpec(name: name, hops: hops, servers: servers), ephemeral: true)
        addTeardownBlock { try? lab.down() }
        return lab
    }

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
        /// "probe: expectation" → outcome, from the JSON report.
        var outcomes: [String: String]
        var junit: String

        func with(_ outcome: String) -> Set<String> { Set(outcomes.filter { $0.value == outcome }.keys) }
    }

    /// Runs suite files from the client namespace with short timeouts; reads the JSON and JUnit reports.
    func runSuite(_ lab: Lab, _ files: [String], extra: [String] = [], ipv6: Bool = false) throws -> Run {
        let dir = lab.stateDirectory
        let json = "\(dir)/suite-\(UUID().uuidString.prefix(8)).json", junit = json.replacingOccurrences(of: ".json", with: ".xml")
        let out = try lab.run(.client, [try binary(), "suite", "run"] + files + [
            "--target", ipv6 ? lab.serverIPv6 : lab.serverIPv4, "--var", "port=80", "--timeout", "0.5", "--retries", "1", "--max-ttl", "8",
            "--json", json, "--junit", junit] + extra)
        var outcomes: [String: String] = [:]
        if let data = FileManager.default.contents(atPath: json),
           let doc = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
            for s in doc["suites"] as? [[String: Any]] ?? [] {
                for p in s["probes"] as? [[String: Any]] ?? [] {
                    for x in p["expectations"] as? [[String: Any]] ?? [] {
                        outcomes["\(p["name"] as? String ?? "?"): \(x["summary"] as? String ?? "?")"] = x["outcome"] as? String
                    }
                }
            }
        }
        let junitText = (try? String(contentsOfFile: junit, encoding: .utf8)) ?? ""
        return Run(status: out.status, stdout: out.stdout, stderr: out.stderr, outcomes: outcomes, junit: junitText)
    }

    /// Every MPTCP SYN probe of the library, and what each checks about MP_CAPABLE / MP_JOIN.
    static let mptcpSYNOptionChecks: Set<String> = [
        "mpc-v1-syn: option mpcapable reaches the destination unmodified",
        "mpc-v1-syn: the server answers with MP_CAPABLE",
        "mpc-v1-syn-checksum: option mpcapable reaches the destination unmodified",
        "mpc-v0-syn: option mpcapable reaches the destination unmodified",
        "mpjoin-syn: option mpjoin reaches the destination unmodified",
        "mpjoin-syn-backup: option mpjoin reaches the last hop that quotes it unmodified",
        "tfo-cookie-request-mpc: option mpcapable reaches the destination unmodified",
        "tfo-cookie-request-mpc: finding dest.mp-capable",
        "tfo-cookie-8-mpc: option mpcapable reaches the destination unmodified",
        "tfo-cookie-16-mpc-no-ts: option mpcapable reaches the destination unmodified",
        "tfo-syn-data-mpc: option mpcapable reaches the last hop that quotes it unmodified",
    ]

    /// Box (on hop 2 of router, box, router) → the expectations that must fail; every other
    /// fail-severity expectation must pass.
    static let table: [(box: String, failing: Set<String>)] = [
        // SYN-only stripping: the handshake's MP_CAPABLE/MP_JOIN are lost, non-SYN options cross.
        ("strip:30@syn", mptcpSYNOptionChecks),
        ("mss:clamp:1300", ["plain-syn: MSS not below 1400"]),
        // A terminating proxy answers the SYNs itself (without MP_CAPABLE) at hop 2.
        ("proxy", [
            "mpc-v1-syn: option mpcapable reaches the destination unmodified",
            "mpc-v1-syn: the server answers with MP_CAPABLE",
            "mpc-v1-syn: no finding path.proxy",
            "mpc-v1-syn-checksum: option mpcapable reaches the destination unmodified",
            "mpc-v0-syn: option mpcapable reaches the destination unmodified",
            "mpjoin-syn: option mpjoin reaches the destination unmodified",
            "tfo-cookie-request-mpc: option tfo reaches the destination unmodified",
            "tfo-cookie-request-mpc: option mpcapable reaches the destination unmodified",
            "tfo-cookie-request-mpc: finding dest.mp-capable",
            "tfo-cookie-8-mpc: option mpcapable reaches the destination unmodified",
            "tfo-cookie-16-mpc-no-ts: option mpcapable reaches the destination unmodified",
            "plain-syn: option ws reaches the destination unmodified",
            "plain-syn: option sackok reaches the destination unmodified",
            "plain-syn: option ts reaches the destination unmodified",
            "plain-syn: no finding path.proxy",
        ]),
        ("ecn:clear", ["ecn-ect0-data: the ECT(0) codepoint is not cleared or rewritten", "ecn-ce-data: a CE mark survives"]),
        ("strip:34", [
            "tfo-cookie-request-mpc: option tfo reaches the destination unmodified",
            "tfo-cookie-8-mpc: option tfo reaches the last hop that quotes it unmodified",
            "tfo-cookie-16-mpc-no-ts: option tfo reaches the last hop that quotes it unmodified",
            "tfo-syn-data-mpc: option tfo reaches the last hop that quotes it unmodified",
        ]),
        // A box that answers MP_CAPABLE SYNs itself: the SYN's options never reach the server and
        // the echo check at the answering TTL finds the box.
        ("echo-mpc", [
            "mpc-v0-syn: option mpcapable reaches the destination unmodified",
            "mpc-v1-syn-checksum: option mpcapable reaches the destination unmodified",
            "mpc-v1-syn: no finding path.proxy",
            "mpc-v1-syn: option mpcapable reaches the destination unmodified",
            "tfo-cookie-16-mpc-no-ts: option mpcapable reaches the destination unmodified",
            "tfo-cookie-8-mpc: option mpcapable reaches the destination unmodified",
            "tfo-cookie-request-mpc: option mpcapable reaches the destination unmodified",
            "tfo-cookie-request-mpc: option tfo reaches the destination unmodified",
        ]),
        // The kernel's SYNPROXY answers every SYN itself, without MP_CAPABLE.
        ("synproxy", [
            "mpc-v0-syn: option mpcapable reaches the destination unmodified",
            "mpc-v1-syn-checksum: option mpcapable reaches the destination unmodified",
            "mpc-v1-syn: no finding path.proxy",
            "mpc-v1-syn: option mpcapable reaches the destination unmodified",
            "mpc-v1-syn: the server answers with MP_CAPABLE",
            "mpjoin-syn: option mpjoin reaches the destination unmodified",
            "plain-syn: no finding path.proxy",
            "plain-syn: option sackok reaches the destination unmodified",
            "plain-syn: option ts reaches the destination unmodified",
            "plain-syn: option ws reaches the destination unmodified",
            "tfo-cookie-16-mpc-no-ts: option mpcapable reaches the destination unmodified",
            "tfo-cookie-8-mpc: option mpcapable reaches the destination unmodified",
            "tfo-cookie-request-mpc: finding dest.mp-capable",
            "tfo-cookie-request-mpc: option mpcapable reaches the destination unmodified",
            "tfo-cookie-request-mpc: option tfo reaches the destination unmodified",
        ]),
        // Sequence randomisation shifts SACK edges with the sequence space.
        ("seqrand", ["sack-blocks: option sack reaches the last hop that quotes it unmodified"]),
    ]

    func testReadinessSuitePassesOnACleanPathToAKernelMPTCPServer() throws {
        let lab = try makeLab(hops: ["router", "router", "router"])
        let r = try runSuite(lab, [Self.readiness])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertGreaterThan(r.outcomes.count, 50)
        XCTAssertEqual(r.with("fail").union(r.with("error")).union(r.with("warn")), [], r.stdout)
        XCTAssertTrue(r.stdout.contains("PASS  mpc-v1-syn"), r.stdout)
        XCTAssertTrue(r.junit.contains("<testsuite name=\"mptcp-readiness\""), r.junit)
        XCTAssertTrue(r.junit.contains("failures=\"0\" errors=\"0\""), r.junit)
        // The kernel server really answered with MP_CAPABLE: its evidence names the server's key.
        XCTAssertTrue(r.stdout.contains("MP_CAPABLE(v1,flags=0x1,skey="), r.stdout)
    }

    /// Over IPv6: the suite passes on a clean path, and a SYN-stripping box fails exactly the
    /// same expectations as over IPv4.
    func testReadinessSuiteOverIPv6() throws {
        let clean = try runSuite(try makeLab(hops: ["router", "router", "router"]), [Self.readiness], ipv6: true)
        XCTAssertEqual(clean.status, 0, clean.stdout + clean.stderr)
        XCTAssertGreaterThan(clean.outcomes.count, 50)
        XCTAssertEqual(clean.with("fail").union(clean.with("error")).union(clean.with("warn")), [], clean.stdout)
        XCTAssertTrue(clean.stdout.contains("MP_CAPABLE(v1,flags=0x1,skey="), clean.stdout)
        let stripped = try runSuite(try makeLab(hops: ["router", "strip:30@syn", "router"]), [Self.readiness], ipv6: true)
        XCTAssertEqual(stripped.status, 1, stripped.stderr)
        XCTAssertEqual(stripped.with("fail"), Self.mptcpSYNOptionChecks,
                       "unexpected \(stripped.with("fail").subtracting(Self.mptcpSYNOptionChecks).sorted()), "
                       + "missing \(Self.mptcpSYNOptionChecks.subtracting(stripped.with("fail")).sorted())")
        XCTAssertEqual(stripped.with("error"), [])
    }

    func testReadinessSuiteFailsWithTheRightExpectationsBehindEachMiddlebox() throws {
        for (box, failing) in Self.table {
            let lab = try makeLab(hops: ["router", box, "router"])
            let r = try runSuite(lab, [Self.readiness])
            XCTAssertEqual(r.status, 1, "\(box): \(r.stderr)")
            XCTAssertEqual(r.with("fail"), failing, "\(box): unexpected fails \(r.with("fail").subtracting(failing).sorted()), "
                           + "missing \(failing.subtracting(r.with("fail")).sorted())")
            XCTAssertEqual(r.with("error"), [], "\(box)")
            XCTAssertTrue(r.junit.contains("failures=\"\(failing.count)\""), "\(box): \(r.junit.prefix(400))")
            try lab.down()
        }
    }

    /// A box dropping every segment with an MPTCP option: each MPTCP probe's option check fails
    /// with the blackhole found behind hop 2, the plain TCP probes pass.
    func testOptionBlackholeFailsEveryMPTCPProbe() throws {
        let lab = try makeLab(hops: ["router", "drop:30", "router"])
        let r = try runSuite(lab, [Self.readiness])
        XCTAssertEqual(r.status, 1)
        let suites = try SuiteParser.load(paths: [Self.readiness])
        let bound = try suites[0].bind(commandLine: Variables(["target": lab.serverIPv4]))
        for p in bound {
            let sendsMPTCP = p.expression?.options.contains { $0.kind == .mptcp } ?? false
            let optionChecks = p.spec.expectations.filter { e in
                if case .optionIntact(let o, _) = e.kind { return o.kind == 30 && e.severity == .fail }
                return false
            }
            for e in optionChecks {
                XCTAssertEqual(r.outcomes["\(p.spec.name): \(e.summary(with: p.variables))"], sendsMPTCP ? "fail" : "pass", p.spec.name)
            }
            if !sendsMPTCP {
                for e in p.spec.expectations where e.severity == .fail {
                    XCTAssertEqual(r.outcomes["\(p.spec.name): \(e.summary(with: p.variables))"], "pass", "\(p.spec.name): \(e.summary)")
                }
            }
        }
        XCTAssertTrue(r.stdout.contains("path.option-blackhole at hop 3 (intact at hop 2)"), r.stdout)
    }

    /// The connect checks run real sessions (the session engine): they pass on a clean path, and
    /// the verdict check fails when a box strips MP_CAPABLE from SYNs.
    func testConnectSuiteRunsSessionsAndFailsBehindAStrippingBox() throws {
        let clean = try runSuite(try makeLab(hops: ["router"]), [Self.library + "/suites/mptcp-session.yaml"])
        XCTAssertEqual(clean.status, 0, clean.stdout + clean.stderr)
        XCTAssertEqual(clean.outcomes["session: verdict is mptcp"], "pass", "\(clean.outcomes)")
        XCTAssertEqual(clean.outcomes["session-join: join outcome is join.ok"], "pass", "\(clean.outcomes)")

        let stripped = try runSuite(try makeLab(hops: ["router", "strip:30@syn", "router"]), [Self.library + "/suites/mptcp-session.yaml"])
        XCTAssertEqual(stripped.status, 1)
        XCTAssertEqual(stripped.outcomes["session: verdict is mptcp"], "fail", "\(stripped.outcomes)")
        XCTAssertTrue(stripped.stdout.contains("fallback.syn-stripped"), stripped.stdout)
    }

    func testCheckReportsBadFilesWithoutSending() throws {
        let bin = try binary()
        let dir = NSTemporaryDirectory() + "mptracebox-suitecheck-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "probe: bad\nsend: \"tcp(syn)/msss(1460)\"\nexpect:\n  - option: mss\n    severty: warn\n"
            .write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        try "probe: other\nsend: \"tcp(syn,dport=${nope})\"\nexpect: [{option: mss}]\n"
            .write(toFile: dir + "/other.yaml", atomically: true, encoding: .utf8)
        let r = try TestShell.run([bin, "suite", "check", dir])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("\(dir)/bad.yaml:5:5: unknown key 'severty' in option expectation (did you mean 'severity'?)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\(dir)/other.yaml:2:22: undefined variable 'nope'"), r.stderr)

        let ok = try TestShell.run([bin, "suite", "check", Self.library])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("probes: valid"), ok.stdout)
        let list = try TestShell.run([bin, "suite", "list", Self.library])
        XCTAssertTrue(list.stdout.contains("suite mptcp-readiness"), list.stdout)
        XCTAssertTrue(list.stdout.contains("mpc-v1-syn  [trace] 5 expectations"), list.stdout)
    }
}
