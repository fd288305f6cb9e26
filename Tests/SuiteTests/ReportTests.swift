import XCTest
import Foundation
import TestSupport
@testable import Suite

/// The report writers, checked by real consumers: the JUnit XML against a JUnit XSD (python3
/// xmlschema) and read by junitparser; the TAP by Perl's `prove`; the JSON by JSONSerialization.
final class ReportTests: XCTestCase {
    /// Debian's interpreter: python3-xmlschema and python3-junitparser install for it.
    static let python = "/usr/bin/python3"
    static let xsd = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/junit.xsd").path

    /// A run with every outcome, and names and evidence full of XML's special characters.
    func mixedRun() throws -> RunResult {
        let yaml = """
            suite: "mixed <&> \\"suite\\""
            probes:
              - probe: strip & clamp
                send: "tcp(syn)/mss(1460)/sackok/ts/nop/ws(7)/mpcapable(v1)"
                expect:
                  - option: mpcapable
                    intact: destination
                    name: MP_CAPABLE <survives> & "arrives"
                  - mss: {min: 1400}
                  - mss: {min: 1500}
                    severity: warn
                  - no-finding: path.proxy
              - probe: session
                connect: {join: true}
                expect:
                  - verdict: mptcp
            """
        let suite = try SuiteParser.parse(yaml: yaml, file: "mixed.yaml")
        var o = RunOptions()
        o.rate = 4000
        o.timeout = 0.5
        o.retries = 0
        o.maxTTL = 8
        let env = SimulatedEnvironment(hops: [.router, .stripMPTCP, .router])
        return SuiteRunner(environment: env, options: o).run([(suite, try suite.bind(commandLine: Variables(["target": "198.18.9.2"])))])
    }

    func temp(_ name: String, _ contents: String) throws -> String {
        let dir = NSTemporaryDirectory() + "mptracebox-suite-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + name
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func requirePythonModules() throws {
        let ok = (try? TestShell.run([Self.python, "-c", "import xmlschema, junitparser"]).status) == 0
        try TestEnvironment.require(ok, "\(Self.python) with xmlschema and junitparser (make deps: python3-xmlschema python3-junitparser)")
    }

    static let validate = """
        import sys, xmlschema, junitparser
        schema = xmlschema.XMLSchema(sys.argv[1])
        schema.validate(sys.argv[2])
        xml = junitparser.JUnitXml.fromfile(sys.argv[2])
        for suite in xml:
            print("suite", suite.name, suite.tests, suite.failures, suite.errors)
            for case in suite:
                kinds = [type(r).__name__ for r in case.result]
                print("case", case.classname, "|", case.name, "|", ",".join(kinds) or "passed", "|", (case.result[0].message if case.result else ""))
        """

    func testJUnitValidatesAgainstTheSchemaAndReadsBackInJunitparser() throws {
        try requirePythonModules()
        let run = try mixedRun()
        XCTAssertEqual([run.count(.pass), run.count(.warn), run.count(.fail), run.count(.error)], [2, 1, 1, 1])
        let xml = SuiteReport.junit(run, hostname: "lab", timestamp: "2026-01-02T03:04:05Z")
        let path = try temp("report.xml", xml)
        let out = try TestShell.check([Self.python, "-c", Self.validate, Self.xsd, path])
        let lines = out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "suite mixed <&> \"suite\" 5 1 1")
        let cases = lines.filter { $0.hasPrefix("case ") }
        XCTAssertEqual(cases.count, 5)
        XCTAssertTrue(cases[0].hasPrefix("case mixed <&> \"suite\".strip & clamp | MP_CAPABLE <survives> & \"arrives\" | Failure | mpcapable nopped at hop 3"), cases[0])
        XCTAssertTrue(cases[1].contains("| MSS not below 1400 | passed |"), cases[1])
        XCTAssertTrue(cases[2].contains("| MSS not below 1500 | passed |"), cases[2]) // a warning does not fail CI
        XCTAssertTrue(cases[3].contains("| no finding path.proxy | passed |"), cases[3])
        XCTAssertTrue(cases[4].hasSuffix("| verdict is mptcp | Error | \(SessionAvailability.unavailable)"), cases[4])
    }

    func testTheSchemaRejectsMalformedReports() throws {
        try requirePythonModules()
        // The validator is not vacuous: a testcase without classname and a negative count fail.
        let bad = """
            <?xml version="1.0" encoding="UTF-8"?>
            <testsuites><testsuite name="s" tests="-1" failures="0" errors="0" time="0">
            <testcase name="x" time="0"/></testsuite></testsuites>
            """
        let path = try temp("bad.xml", bad)
        let r = try TestShell.run([Self.python, "-c", Self.validate, Self.xsd, path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("XMLSchemaValidationError") || r.stderr.contains("failed validating"), r.stderr)
    }

    func testTAPIsReadByProve() throws {
        try TestEnvironment.requireTool("prove")
        let run = try mixedRun()
        let tap = SuiteReport.tap(run)
        XCTAssertTrue(tap.hasPrefix("TAP version 13\n1..5\n"))
        XCTAssertTrue(tap.contains("not ok 3 - mixed <&> \"suite\"/strip & clamp: MSS not below 1500 # TODO warn: "), tap)
        let path = try temp("report.tap", tap)
        let failing = try TestShell.run(["prove", "--exec", "cat", path])
        // A failure and an error fail the harness; the TODO (warning) does not count.
        XCTAssertNotEqual(failing.status, 0)
        XCTAssertTrue(failing.stdout.contains("Failed 2/5 subtests"), failing.stdout)

        let passing = try temp("ok.tap", SuiteReport.tap(RunResult(suites: run.suites.map { s in
            var s = s
            s.probes = s.probes.map { p in
                var p = p
                p.expectations = p.expectations.filter { $0.outcome == .pass || $0.outcome == .warn }
                return p
            }
            return s
        }, durationSeconds: 0)))
        let ok = try TestShell.run(["prove", "--exec", "cat", passing])
        XCTAssertEqual(ok.status, 0, ok.stdout + ok.stderr)
    }

    func testJSONDocument() throws {
        let run = try mixedRun()
        let text = SuiteReport.json(run).rendered(pretty: true)
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(doc["schema"] as? String, "mptracebox.suite/1")
        XCTAssertEqual(doc["outcome"] as? String, "failed")
        XCTAssertEqual(doc["counts"] as? [String: Int], ["pass": 2, "warn": 1, "fail": 1, "error": 1])
        let probes = try XCTUnwrap(((doc["suites"] as? [[String: Any]])?.first?["probes"]) as? [[String: Any]])
        XCTAssertEqual(probes.map { $0["name"] as? String }, ["strip & clamp", "session"])
        let trace = try XCTUnwrap(probes[0]["trace"] as? [String: Any])
        XCTAssertEqual(trace["schema"] as? String, "mptracebox.trace/1")
        XCTAssertEqual(probes[1]["connect_error"] as? String, SessionAvailability.unavailable)
        let x = try XCTUnwrap(probes[0]["expectations"] as? [[String: Any]])
        XCTAssertEqual(x.compactMap { $0["outcome"] as? String }, ["fail", "pass", "warn", "pass"])
        XCTAssertEqual(x[0]["at"] as? String, "mixed.yaml:6:9")
    }

    func testTextReport() throws {
        let text = SuiteReport.text(try mixedRun())
        XCTAssertTrue(text.contains("  FAIL  strip & clamp  → 198.18.9.2:80  tcp(syn)/mss(1460)/sackok/ts/nop/ws(7)/mpcapable(v1)\n"), text)
        XCTAssertTrue(text.contains("    FAIL  MP_CAPABLE <survives> & \"arrives\"\n           mpcapable nopped at hop 3"), text)
        XCTAssertTrue(text.contains("    ERROR verdict is mptcp\n           \(SessionAvailability.unavailable)\n"), text)
        XCTAssertTrue(text.hasSuffix("): FAILED\n"), text)
        XCTAssertTrue(text.contains("2 pass, 1 warn, 1 fail, 1 error in 2 probes"), text)
    }
}
