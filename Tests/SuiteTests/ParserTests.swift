import XCTest
@testable import Suite

/// The file format: YAML → typed probes, suites and expectations, and errors at file:line:column.
final class ParserTests: XCTestCase {
    func parse(_ yaml: String, file: String = "t.yaml", files: [String: String] = [:]) throws -> SuiteSpec {
        try SuiteParser.parse(yaml: yaml, file: file) { path in
            guard let s = files[path] else { throw SuiteError("no \(path)", at: nil) }
            return s
        }
    }

    /// The error thrown for `yaml`, as `line:column: message`.
    func error(_ yaml: String, vars: [String: String] = ["target": "198.18.0.2"], file: String = "t.yaml",
               files: [String: String] = [:], line: UInt = #line) -> SuiteError? {
        do {
            let s = try parse(yaml, file: file, files: files)
            _ = try s.bind(commandLine: Variables(vars))
            XCTFail("no error", line: line)
            return nil
        } catch let e as SuiteError {
            return e
        } catch let e as SuiteErrors {
            return e.errors.first
        } catch {
            XCTFail("unexpected \(error)", line: line)
            return nil
        }
    }

    func testProbeFileWithEveryExpectationKind() throws {
        let s = try parse("""
            probe: mpc
            description: MP_CAPABLE in the SYN
            tags: [mptcp]
            send: "tcp(syn)/mss(1460)/mpcapable(v1)"
            trace: {max-ttl: 12, timeout: 0.5, retries: 0}
            expect:
              - option: mpcapable
                intact: destination
              - option: mss
                intact: 3
              - no-finding: option.*
                option: mptcp
                before: 4
              - finding: dest.mp-capable
              - destination: {reached: true, reply: synack, flags: [ece], options: [mpcapable], no-options: [tfo]}
              - mss: {min: 1400}
                severity: warn
                name: MSS stays large
            """)
        XCTAssertTrue(s.isSingleProbe)
        let p = try XCTUnwrap(s.probes.first)
        XCTAssertEqual(p.name, "mpc")
        XCTAssertEqual(p.tags, ["mptcp"])
        XCTAssertNotNil(p.trace)
        XCTAssertNil(p.connect)
        XCTAssertEqual(p.expectations.count, 6)
        guard case .optionIntact(let o, .destination) = p.expectations[0].kind else { return XCTFail("\(p.expectations[0].kind)") }
        XCTAssertEqual(o.kind, 30)
        XCTAssertEqual(o.subtype, 0)
        guard case .optionIntact(let mss, .hop(let n)) = p.expectations[1].kind else { return XCTFail() }
        XCTAssertEqual(mss.kind, 2)
        XCTAssertEqual(n.text, "3")
        guard case .noFinding("option.*", let before, let opt) = p.expectations[2].kind else { return XCTFail() }
        XCTAssertEqual(before?.text, "4")
        XCTAssertEqual(opt?.kind, 30)
        XCTAssertNil(opt?.subtype)
        guard case .destination(let d) = p.expectations[4].kind else { return XCTFail() }
        XCTAssertEqual(d.reached, true)
        XCTAssertEqual(d.replies, ["synack"])
        XCTAssertEqual(d.flags, ["ece"])
        XCTAssertEqual(d.withoutOptions.map(\.kind), [34])
        XCTAssertEqual(p.expectations[5].severity, .warn)
        XCTAssertEqual(p.expectations[5].summary, "MSS stays large")
        XCTAssertEqual(p.expectations[5].location, SourceLocation(file: "t.yaml", line: 16, column: 5))

        let b = try p.bind(suite: s.name, outer: Variables(["target": "198.18.3.2"]))
        XCTAssertEqual(b.trace?.maxTTL, 12)
        XCTAssertEqual(b.trace?.timeout, 0.5)
        XCTAssertEqual(b.port, 80)
        XCTAssertEqual(b.expression?.options.count, 2)
    }

    func testStructuredSendBuildsTheSameProbeAsTheLanguage() throws {
        let s = try parse("""
            probe: ecn
            send:
              ip: {ecn: 2, dscp: 10}
              tcp: {flags: [ack, psh], dport: "${port}"}
              options:
                - nop
                - ts
                - dss: {dack: 1000, dsn: 5000, ssn: 1, len: 4}
              payload: "abcd"
            expect:
              - option: dss
            """)
        let b = try s.probes[0].bind(suite: s.name, outer: Variables(["target": "198.18.3.2", "port": "8080"]))
        let e = try XCTUnwrap(b.expression)
        XCTAssertEqual(e.ip.ecn, 2)
        XCTAssertEqual(e.ip.dscp, 10)
        XCTAssertEqual(e.tcp.flags, [.ack, .psh])
        XCTAssertEqual(e.tcp.destinationPort, 8080)
        XCTAssertEqual(e.payload, Array("abcd".utf8))
        XCTAssertEqual(e.options.map(\.kind.rawValue), [1, 8, 30])
    }

    func testVariablesPrecedenceAndEscapes() throws {
        let files = ["dir/p.yaml": """
            suite: inner
            vars: {port: "81", id: "7", who: inner}
            probes:
              - probe: p
                vars: {id: "3", who: probe}
                send: "tcp(syn,dport=${port})/mpjoin(id=${id})/payload(\\"$$${who}\\")"
                expect: [{option: mpjoin}]
            """]
        let s = try parse("""
            suite: outer
            vars: {id: "9"}
            probes: [p.yaml]
            """, file: "dir/s.yaml", files: files)
        // The included suite's vars beat the probe's; the including suite's beat both; the command line beats all.
        var b = try s.bind(commandLine: Variables(["target": "198.18.3.2"]))[0]
        XCTAssertEqual(b.expression?.tcp.destinationPort, 81)
        XCTAssertEqual(b.expression?.text, "tcp(syn,dport=81)/mpjoin(id=9)/payload(\"$inner\")")
        b = try s.bind(commandLine: Variables(["target": "198.18.3.2", "id": "12", "port": "8080"]))[0]
        XCTAssertEqual(b.expression?.text, "tcp(syn,dport=8080)/mpjoin(id=12)/payload(\"$inner\")")
        XCTAssertEqual(b.port, 8080)
    }

    func testErrorsPointAtTheFileLineAndColumn() throws {
        // YAML syntax.
        var e = error("probe: x\nsend: [unclosed\n")
        XCTAssertEqual(e?.location?.file, "t.yaml")
        XCTAssertEqual(e?.location?.line, 3)
        XCTAssertTrue(e?.message.hasPrefix("YAML:") ?? false, "\(String(describing: e))")

        // Unknown key, with a suggestion.
        e = error("probe: x\nsend: \"tcp(syn)\"\nexpct:\n  - option: mss\n")
        XCTAssertEqual(e?.description, "t.yaml:3:1: unknown key 'expct' in probe (did you mean 'expect'?); known: probe, description, tags, send, target, port, vars, trace, connect, expect")

        // A probe-language error maps into the scalar: column of 'msss' in the file.
        e = error("probe: x\nsend: \"tcp(syn)/msss(1460)\"\nexpect: [{option: mss}]\n")
        XCTAssertEqual(e?.location, SourceLocation(file: "t.yaml", line: 2, column: 17))
        XCTAssertTrue(e?.message.contains("unknown layer or option \"msss\"") ?? false, "\(String(describing: e))")

        // Plain scalar, error after a substituted variable: the column is still the file's.
        e = error("probe: x\nvars: {k: \"1\"}\nsend: tcp(syn)/mpjoin(id=${k})/bogus\nexpect: [{option: mpjoin}]\n")
        XCTAssertEqual(e?.location, SourceLocation(file: "t.yaml", line: 3, column: 32))

        // Undefined variable: at the reference.
        e = error("probe: x\nsend: \"tcp(syn,dport=${nope})\"\nexpect: [{option: mss}]\n")
        XCTAssertEqual(e?.location, SourceLocation(file: "t.yaml", line: 2, column: 22))
        XCTAssertTrue(e?.message.contains("undefined variable 'nope'") ?? false)

        // Bad expectation value.
        e = error("probe: x\nsend: \"tcp(syn)/mss(1460)\"\nexpect:\n  - option: mss\n    severity: fatal\n")
        XCTAssertEqual(e?.description, "t.yaml:5:15: severity is fail or warn, not 'fatal'")
        e = error("probe: x\nsend: \"tcp(syn)\"\nexpect:\n  - option: nosuch\n")
        XCTAssertEqual(e?.location, SourceLocation(file: "t.yaml", line: 4, column: 13))
        e = error("probe: x\nsend: \"tcp(syn)\"\nexpect:\n  - option: mss\n    verdict: mptcp\n")
        XCTAssertEqual(e?.location?.line, 4)
        XCTAssertTrue(e?.message.contains("several kinds") ?? false)

        // Duplicate key.
        e = error("probe: x\nsend: \"tcp(syn)\"\nsend: \"tcp(ack)\"\nexpect: [{option: mss}]\n")
        XCTAssertEqual(e?.description, "t.yaml:2:1: key 'send' given more than once in the same mapping")

        // Neither probe nor suite.
        e = error("name: x\n")
        XCTAssertEqual(e?.location, SourceLocation(file: "t.yaml", line: 1, column: 1))

        // Port out of range after substitution.
        e = error("probe: x\nport: \"${p}\"\nvars: {p: \"70000\"}\nsend: \"tcp(syn)\"\nexpect: [{option: mss}]\n")
        XCTAssertEqual(e?.location?.line, 2)
        XCTAssertTrue(e?.message.contains("port must be an integer in 1...65535") ?? false)

        // A trace expectation with the trace turned off.
        e = error("probe: x\nsend: \"tcp(syn)\"\ntrace: false\nexpect:\n  - option: mss\n")
        XCTAssertEqual(e?.location?.line, 5)

        // A probe without any check.
        e = error("probe: x\nsend: \"tcp(syn)\"\n")
        XCTAssertTrue(e?.message.contains("runs no check") ?? false)
    }

    func testSuiteIncludesResolveRelativePathsAndRejectCycles() throws {
        let files = ["lib/a.yaml": "probe: a\nsend: \"tcp(syn)\"\nexpect: [{option: mss}]\n",
                     "lib/loop.yaml": "suite: loop\nprobes: [../lib/loop.yaml]\n"]
        let s = try parse("suite: s\nprobes:\n  - lib/a.yaml\n  - probe: inline\n    connect: {join: true}\n    expect: [{join: join.ok}]\n",
                          file: "s.yaml", files: files)
        XCTAssertEqual(s.probes.map(\.name), ["a", "inline"])
        XCTAssertNotNil(s.probes[1].connect)
        XCTAssertNil(s.probes[1].trace)

        let cycle = error("suite: s\nprobes: [lib/loop.yaml]\n", file: "s.yaml", files: files)
        XCTAssertTrue(cycle?.message.contains("includes itself") ?? false, "\(String(describing: cycle))")
        XCTAssertEqual(cycle?.location?.file, "lib/loop.yaml")

        let dup = error("suite: s\nprobes: [lib/a.yaml, lib/a.yaml]\n", file: "s.yaml", files: files)
        XCTAssertTrue(dup?.message.contains("used twice") ?? false)

        let missing = error("suite: s\nprobes:\n  - lib/none.yaml\n", file: "s.yaml", files: files)
        XCTAssertEqual(missing?.location, SourceLocation(file: "s.yaml", line: 3, column: 5))
    }

    func testOptionBudgetIsCheckedBeforeSending() throws {
        // 20 bytes of classic options + MP_CAPABLE (4) + a 16-byte TFO cookie (18) = 42 > 40.
        let s = try parse("probe: x\nsend: \"tcp(syn)/mss(1460)/sackok/ts/nop/ws(7)/tfo(cookie=0102030405060708090a0b0c0d0e0f10)/mpcapable(v1)\"\nexpect: [{option: tfo}]\n")
        let b = try s.probes[0].bind(suite: "x", outer: Variables(["target": "198.18.3.2"]))
        XCTAssertThrowsError(try b.validatePacket(target: .v4(.init(198, 18, 3, 2)))) { e in
            XCTAssertEqual((e as? SuiteError)?.location?.line, 2)
        }
    }

    func testOptionReferences() {
        XCTAssertEqual(OptionRef(parsing: "mpcapable").map { [$0.kind, $0.subtype ?? 99] }, [30, 0])
        XCTAssertEqual(OptionRef(parsing: "30/3").map { [$0.kind, $0.subtype ?? 99] }, [30, 3])
        XCTAssertEqual(OptionRef(parsing: "kind=200").map { [$0.kind, $0.subtype ?? 99] }, [200, 99])
        XCTAssertEqual(OptionRef(parsing: "mptcp").map { [$0.kind, $0.subtype ?? 99] }, [30, 99])
        XCTAssertNil(OptionRef(parsing: "2/1"))
        XCTAssertNil(OptionRef(parsing: "mpcapabel"))
    }

    func testCommandLineAssignments() throws {
        XCTAssertEqual(try Variables.assignment("port=8080").1, "8080")
        XCTAssertEqual(try Variables.assignment("a=b=c").1, "b=c")
        XCTAssertThrowsError(try Variables.assignment("port"))
        XCTAssertThrowsError(try Variables.assignment("9x=1"))
    }

    /// Every shipped file parses, binds and builds (what `suite check probes/` does).
    func testShippedLibraryIsValid() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../probes").standardized.path
        let suites = try SuiteParser.load(paths: [dir])
        XCTAssertGreaterThanOrEqual(suites.count, 10)
        var names = Set<String>()
        for s in suites {
            for b in try s.bind(commandLine: Variables(["target": "198.18.3.2"])) {
                try b.validatePacket(target: .v4(.init(198, 18, 3, 2)))
                if let e = b.expression { names.formUnion(e.options.compactMap { $0.mptcpSubtype.map { "\($0.rawValue)" } }) }
            }
        }
        // Every MPTCP subtype 0-8, the experimental one (15) and an unassigned one are probed.
        for sub in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "15", "12"] {
            XCTAssertTrue(names.contains(sub), "no shipped probe sends MPTCP subtype \(sub)")
        }
    }
}
