import XCTest
import TestSupport

/// The CLI as a user meets it: help, version, documented exit statuses and messages for bad
/// input and missing privileges. Nothing here sends a packet.
final class CLITests: XCTestCase {
    func run(_ args: [String], prefix: [String] = []) throws -> CommandResult {
        try TestShell.run(prefix + [try TestBinary.path()] + args)
    }

    func testVersionAndHelpListTheCommands() throws {
        let v = try run(["--version"])
        XCTAssertEqual(v.status, 0)
        XCTAssertTrue(v.stdout.contains("0.1.0"))
        let help = try run(["--help"])
        XCTAssertEqual(help.status, 0)
        for command in ["trace", "lab", "suite"] { XCTAssertTrue(help.stdout.contains(command), "--help lacks \(command)") }
        XCTAssertFalse(help.stdout.contains("_element"), "hidden subcommand shown")
        let trace = try run(["help", "trace"])
        for flag in ["--min-ttl", "--max-ttl", "--timeout", "--retries", "--rate", "--interface", "--source", "--sequential",
                     "--json", "--pcap", "--probe-file", "--dport", "--sport", "-4", "-6", "-n"] {
            XCTAssertTrue(trace.stdout.contains(flag), "trace --help lacks \(flag)")
        }
        XCTAssertTrue(trace.stdout.contains("Exit status"))
    }

    func testABadProbeIsAUsageErrorThatPointsAtTheColumn() throws {
        let r = try run(["trace", "-p", "tcp(syn)/msss(1460)", "198.18.0.1"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("column 10"), r.stderr)
        XCTAssertTrue(r.stderr.contains("did you mean mss"), r.stderr)
        XCTAssertTrue(r.stderr.contains("          ^"), r.stderr)
    }

    func testBadFlagsAreUsageErrors() throws {
        XCTAssertEqual(try run(["trace", "--min-ttl", "9", "--max-ttl", "3", "198.18.0.1"]).status, 64)
        XCTAssertEqual(try run(["trace", "-4", "-6", "198.18.0.1"]).status, 64)
        XCTAssertEqual(try run(["trace", "--timeout", "0", "198.18.0.1"]).status, 64)
        XCTAssertEqual(try run(["trace", "--source", "not-an-address", "198.18.0.1"]).status, 64)
        XCTAssertEqual(try run(["trace", "-p", ProbeOverBudget.text, "198.18.0.1"]).status, 64)
    }

    func testAProbeFileWithAnErrorNamesFileLineAndColumn() throws {
        let path = NSTemporaryDirectory() + "mtb-probes-\(getpid()).txt"
        try "# probes\ntcp(syn)/mss(1460)\ntcp(syn)/ws(300)\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try run(["trace", "--probe-file", path, "198.18.0.1"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("\(path):3:13"), r.stderr)
    }

    func testAnUnresolvableTargetExits68() throws {
        let r = try run(["trace", "no-such-host.invalid"])
        XCTAssertEqual(r.status, 68)
        XCTAssertTrue(r.stderr.contains("cannot resolve no-such-host.invalid"), r.stderr)
    }

    func testMissingCapabilityIsNamedAndExits77() throws {
        try TestEnvironment.requireRoot()
        try TestEnvironment.requireTool("setpriv")
        // Drop CAP_NET_RAW and CAP_NET_ADMIN from the bounding set: the binary runs without them.
        let r = try run(["trace", "-n", "198.18.0.1"], prefix: ["setpriv", "--bounding-set", "-net_raw,-net_admin"])
        XCTAssertEqual(r.status, 77, r.stderr)
        XCTAssertTrue(r.stderr.contains("CAP_NET_RAW"), r.stderr)
        let lab = try run(["lab", "up", "--name", "nocap"], prefix: ["setpriv", "--bounding-set", "-net_admin,-sys_admin"])
        XCTAssertNotEqual(lab.status, 0)
        XCTAssertTrue(lab.stderr.contains("CAP_NET_ADMIN") || lab.stderr.contains("root"), lab.stderr)
    }
}

extension CLITests {
    func testScanUsageErrors() throws {
        let list = NSTemporaryDirectory() + "mtb-cli-\(getpid()).txt"
        try "198.18.0.1\n".write(toFile: list, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: list) }
        let bogus = try run(["scan", "run", list, "--checks", "trace,bogus"])
        XCTAssertEqual(bogus.status, 64)
        XCTAssertTrue(bogus.stderr.contains("unknown check 'bogus'"), bogus.stderr)
        XCTAssertEqual(try run(["scan", "run", list, "--http", "--echo"]).status, 64)
        XCTAssertEqual(try run(["scan", "run", list, "--mptcp-version", "2"]).status, 64)
        // Three local ports per session: 2,000 sessions in flight need more than the default range.
        let many = try run(["scan", "run", list, "--checks", "connect", "--concurrency", "2000"])
        XCTAssertEqual(many.status, 64, many.stderr)
        XCTAssertTrue(many.stderr.contains("needs 6000 local ports"), many.stderr)
    }

    /// Sessions in a scan need CAP_NET_ADMIN for the kernel-RST guard: said before anything is sent
    /// (in an empty namespace of its own, so nothing could leave it anyway).
    func testAScanWithSessionsNamesCAPNETADMIN() throws {
        try TestEnvironment.requireRoot()
        try TestEnvironment.requireTool("setpriv")
        let ns = "mtbcli-\(getpid())"
        _ = try TestShell.run(["ip", "netns", "add", ns])
        defer { _ = try? TestShell.run(["ip", "netns", "del", ns]) }
        _ = try TestShell.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        let list = NSTemporaryDirectory() + "mtb-cli-cap-\(getpid()).txt"
        try "198.18.0.1\n".write(toFile: list, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: list) }
        let r = try run(["scan", "run", list, "--quiet"], prefix: ["ip", "netns", "exec", ns, "setpriv", "--bounding-set", "-net_admin"])
        XCTAssertEqual(r.status, 77, r.stderr)
        XCTAssertTrue(r.stderr.contains("CAP_NET_ADMIN"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty, "no record: nothing was probed\n\(r.stdout)")
    }
}

enum ProbeOverBudget {
    /// The default probe plus a 16-byte TFO cookie: 42 bytes of options.
    static let text = "tcp(syn)/mss(1460)/sackok/ts/nop/ws(7)/mpcapable(v1)/tfo(cookie=00112233445566778899aabbccddeeff)"
}
