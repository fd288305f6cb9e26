import ArgumentParser
import Foundation
import Wire
import PacketIO
import Trace
import NetIO
import Suite

struct SuiteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suite",
        abstract: "Run scripted probe suites (YAML files in probes/) against a target.",
        discussion: """
            Probe files say what to send and what to expect; suite files group probes. See \
            docs/suites.md. Without paths, the shipped MPTCP readiness suite runs.
            """,
        subcommands: [SuiteRun.self, SuiteList.self, SuiteCheck.self],
        defaultSubcommand: nil)
}

/// Files and variables shared by the subcommands.
struct SuiteFileOptions: ParsableArguments {
    @Argument(help: "Probe or suite files, or directories of them (default: the shipped readiness suite).")
    var paths: [String] = []

    @Option(name: .customLong("var"), help: ArgumentHelp("Set a variable (repeatable): --var port=8080.", valueName: "name=value"))
    var vars: [String] = []

    @Option(name: .long, help: "The target (name or address); sets the variable 'target'.")
    var target: String?

    func variables() throws -> Variables {
        var v = Variables()
        for a in vars {
            let (name, value) = try Variables.assignment(a)
            v[name] = value
        }
        if let t = target { v["target"] = t }
        return v
    }

    func load() throws -> [SuiteSpec] {
        let p = paths.isEmpty ? [try ProbeLibrary.defaultSuite()] : paths
        return try SuiteParser.load(paths: p)
    }
}

/// Where the shipped probe library is: ./probes, next to the binary's checkout, or installed.
enum ProbeLibrary {
    static let readiness = "suites/mptcp-readiness.yaml"

    static func directory() -> String? {
        var candidates = ["probes"]
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        // .build/debug/mptracebox → the checkout's probes/.
        candidates.append(exe.appendingPathComponent("../../../probes").standardized.path)
        candidates.append(exe.appendingPathComponent("../share/mptracebox/probes").standardized.path)
        candidates.append("/usr/share/mptracebox/probes")
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/" + readiness) }
    }

    static func defaultSuite() throws -> String {
        guard let d = directory() else {
            throw CLIError.usage("no probe library found (looked for probes/\(readiness)); give the suite files to run")
        }
        return d + "/" + readiness
    }
}

/// Prints every problem of a bad file (file:line:column: message) and exits 64.
func reportingSuiteErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as SuiteErrors {
        for err in e.errors { printError("mptracebox: \(err)") }
        throw ExitCode(64)
    } catch let e as SuiteError {
        printError("mptracebox: \(e)")
        throw ExitCode(64)
    }
}

struct SuiteRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run probes and check their expectations.",
        discussion: """
            Probes run --jobs at a time, each as its own flow; --rate is the packet rate of all of \
            them together. The report lists pass/warn/fail/error per expectation with its evidence.

            Exit status: 0 every fail-severity expectation held (warnings allowed), 1 one failed or \
            could not be evaluated, 64 usage error or bad file, 68 the target cannot be resolved or \
            routed, 77 a capability is missing (CAP_NET_RAW).
            """)

    @OptionGroup var files: SuiteFileOptions

    @Flag(name: .customShort("4"), help: "Use IPv4 (resolve A records).")
    var ipv4 = false

    @Flag(name: .customShort("6"), help: "Use IPv6 (resolve AAAA records).")
    var ipv6 = false

    @Option(name: .long, help: "Source address (default: the kernel's choice toward the target).")
    var source: String?

    @Option(name: .long, help: "Send from this interface.")
    var interface: String?

    @Option(name: .long, help: "Packets per second, all probes together.")
    var rate: Double = 100

    @Option(name: .long, help: "Probes run at once.")
    var jobs: Int = 4

    @Option(name: .long, help: "Seconds to wait for a reply (a probe's trace: settings win).")
    var timeout: Double = 1.0

    @Option(name: .long, help: "Extra tries for probes that got no reply.")
    var retries: Int = 1

    @Option(name: .long, help: "Last TTL / hop limit.")
    var maxTTL: Int = 30

    @Option(name: .long, help: "Write a JUnit XML report to this file.")
    var junit: String?

    @Option(name: .long, help: "Write a TAP version 13 report to this file ('-': standard output instead of the text report).")
    var tap: String?

    @Option(name: .long, help: "Write the JSON report (schema mptracebox.suite/1) to this file ('-': standard output).")
    var json: String?

    func validate() throws {
        if ipv4 && ipv6 { throw ValidationError("-4 and -6 exclude each other") }
        if let s = source, IPAddress(s) == nil { throw ValidationError("--source \(s) is not an IPv4 or IPv6 address") }
        if tap == "-" && json == "-" { throw ValidationError("only one of --tap and --json can write to standard output") }
        var o = options
        o.rate = rate
        do { try o.validate() } catch let e as SuiteError { throw ValidationError(e.message) }
    }

    var options: RunOptions {
        var o = RunOptions()
        o.rate = rate
        o.jobs = jobs
        o.timeout = timeout
        o.retries = retries
        o.maxTTL = maxTTL
        o.sourcePortBase = UInt16.random(in: 32768...60999)
        o.randomIdentity = true
        return o
    }

    func run() throws {
        let suites = try reportingSuiteErrors { try files.load() }
        let vars = try reportingSuiteErrors { try files.variables() }
        let bound = try reportingSuiteErrors { () -> [(SuiteSpec, [BoundProbe])] in
            var out: [(SuiteSpec, [BoundProbe])] = []
            var errors: [SuiteError] = []
            for s in suites {
                do { out.append((s, try s.bind(commandLine: vars))) } catch let e as SuiteErrors { errors += e.errors }
            }
            if !errors.isEmpty { throw SuiteErrors(errors) }
            return out
        }
        try runReportingErrors {
            let env = LiveSuiteEnvironment(family: ipv4 ? .v4 : ipv6 ? .v6 : .any, source: source.flatMap(IPAddress.init),
                                           interface: interface)
            // Resolve every target and check privileges before anything is sent.
            for t in Set(bound.flatMap { $0.1.map(\.target) }) {
                let a = try env.resolveForCLI(t)
                for p in bound.flatMap(\.1) where p.target == t {
                    do { try p.validatePacket(target: a) } catch let e as SuiteError { throw CLIError.usage(e.description) }
                }
            }
            if bound.contains(where: { $0.1.contains { $0.trace != nil } }) {
                try Privileges.require([.netRaw], for: "sending crafted probes and capturing replies")
            }
            let result = SuiteRunner(environment: env, options: options).run(bound)
            let stdoutTaken = tap == "-" || json == "-"
            if let j = junit { try write(SuiteReport.junit(result, hostname: ProcessInfo.processInfo.hostName,
                                                           timestamp: ISO8601DateFormatter().string(from: Date())), to: j) }
            if let t = tap { t == "-" ? print(SuiteReport.tap(result), terminator: "") : try write(SuiteReport.tap(result), to: t) }
            if let j = json {
                let doc = SuiteReport.json(result).rendered(pretty: true) + "\n"
                j == "-" ? print(doc, terminator: "") : try write(doc, to: j)
            }
            let text = SuiteReport.text(result, color: !stdoutTaken && isatty(1) != 0)
            if stdoutTaken { printError(text) } else { print(text, terminator: "") }
            if result.failed { throw ExitCode(1) }
        }
    }

    func write(_ s: String, to path: String) throws {
        do { try s.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw CLIError.runtime("cannot write \(path): \(error.localizedDescription)")
        }
    }
}

struct SuiteList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List suites and probes with their checks and expectations.")

    @Argument(help: "Probe or suite files, or directories (default: the shipped probe library).")
    var paths: [String] = []

    func run() throws {
        let p: [String]
        if paths.isEmpty {
            guard let d = ProbeLibrary.directory() else { throw CLIError.usage("no probe library found; give paths") }
            p = [d]
        } else {
            p = paths
        }
        let suites = try reportingSuiteErrors { try SuiteParser.load(paths: p) }
        for s in suites {
            print("\(s.isSingleProbe ? "probe" : "suite") \(s.name)  (\(s.location.file))" + (s.description.map { "\n  \($0)" } ?? ""))
            guard !s.isSingleProbe else { continue }
            for probe in s.probes {
                let checks = [probe.trace != nil ? "trace" : nil, probe.connect != nil ? "connect" : nil].compactMap { $0 }
                print("  \(probe.name)  [\(checks.joined(separator: ", "))] \(probe.expectations.count) expectation\(probe.expectations.count == 1 ? "" : "s")"
                      + (probe.description.map { ": \($0)" } ?? ""))
            }
        }
    }
}

struct SuiteCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate probe and suite files without sending anything.",
        discussion: """
            Parses every file, substitutes variables (a placeholder target when none is given) and \
            builds every probe, reporting each problem as file:line:column. Exit status 0 valid, \
            64 a file has errors.
            """)

    @OptionGroup var files: SuiteFileOptions

    func run() throws {
        let paths = files.paths.isEmpty ? [try ProbeLibrary.defaultSuite()] : files.paths
        // Files that parse are bound and built too, so one run reports every problem.
        var (suites, errors) = SuiteParser.loadCollecting(paths: paths)
        var vars = try reportingSuiteErrors { try files.variables() }
        if vars["target"] == nil { vars["target"] = "198.18.0.2" }
        var probes = 0, connect = 0
        for s in suites {
            do {
                for p in try s.bind(commandLine: vars) {
                    probes += 1
                    if p.connect != nil { connect += 1 }
                    let address = IPAddress(p.target) ?? .v4(IPv4Address(198, 18, 0, 2))
                    do { try p.validatePacket(target: address) } catch let e as SuiteError { errors.append(e) }
                }
            } catch let e as SuiteErrors { errors += e.errors }
        }
        if !errors.isEmpty {
            for e in errors { printError("mptracebox: \(e)") }
            throw ExitCode(64)
        }
        print("\(suites.count) file\(suites.count == 1 ? "" : "s"), \(probes) probe\(probes == 1 ? "" : "s"): valid")
        if connect > 0 { print("note: \(connect) probe\(connect == 1 ? " uses" : "s use") connect checks (complete MPTCP sessions)") }
    }
}

/// The live network for suites: resolver, route lookups, libnet + libpcap per trace.
final class LiveSuiteEnvironment: SuiteEnvironment, @unchecked Sendable {
    let family: FamilyPreference
    let fixedSource: IPAddress?
    let interface: String?
    let sessions: SessionChecker?

    init(family: FamilyPreference, source: IPAddress?, interface: String?) {
        self.family = family
        fixedSource = source
        self.interface = interface
        sessions = LiveSessionChecker(interface: interface)
    }

    func resolveForCLI(_ target: String) throws -> IPAddress {
        do { return try resolve(target) } catch { throw CLIError.target("\(error)") }
    }

    func resolve(_ target: String) throws -> IPAddress {
        guard let a = try Resolver.resolve(target, family: family).first else { throw SuiteError("cannot resolve \(target)", at: nil) }
        return a
    }

    func source(toward target: IPAddress) throws -> IPAddress {
        if let s = fixedSource { return s }
        return try Resolver.sourceAddress(toward: target)
    }

    func traceNetwork(for configuration: TraceConfiguration) throws -> PacketNetwork {
        try LiveNetwork(options: LiveNetwork.Options(filter: TraceEngine.captureFilter(configuration), interface: interface))
    }
}
