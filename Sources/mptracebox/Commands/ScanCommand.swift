import ArgumentParser
import Foundation
import Wire
import Probe
import Trace
import Session
import NetIO
import Report
import Scan

/// Set by SIGINT/SIGTERM: the scan stops taking targets, commits what is done and exits 130.
nonisolated(unsafe) var scanStopRequested: sig_atomic_t = 0

struct ScanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Probe lists of servers; keep the history; report and compare runs.",
        discussion: "See docs/scans.md for the list format, the record format, the database schema and cron/systemd examples.",
        subcommands: [ScanRunCommand.self, ScanReportCommand.self, ScanDiffCommand.self],
        defaultSubcommand: ScanRunCommand.self)
}

/// Exit statuses of `scan`, for timers that alert on them.
enum ScanExit {
    static let done: Int32 = 0
    static let partial: Int32 = 3
    static let usage: Int32 = 64
    static let badInput: Int32 = 65
    static let noInput: Int32 = 66
    static let ioError: Int32 = 74
    static let privileges: Int32 = 77
    static let interrupted: Int32 = 130
}

struct ScanRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Scan the targets listed in FILE… (or stdin): `mptracebox scan [run] FILE…`.",
        discussion: """
            Lines: host, host:port, [v6addr]:port, addr, CIDR blocks (up to --max-expand addresses), \
            each with an optional tag after a space; # comments and blank lines are skipped. Bad lines \
            are reported as file:line and skipped (--strict: nothing is probed).

            Per target: a trace and a crafted MPTCP session by default (--checks). Sessions need \
            CAP_NET_ADMIN too: an nftables table keeps the local kernel from resetting them while \
            the scan runs.

            Results stream as JSON Lines (schema mptracebox.scan/1) to stdout or --output, and to the \
            SQLite history with --db. A killed run continues with --resume: nothing is lost or \
            recorded twice (records are written to --output only after their commit).

            Exit status: 0 every target recorded; 3 the run ended but some lines, names or targets \
            could not be probed; 64 usage; 65 bad lines with --strict; 66 a list cannot be read; \
            74 database or output error; 77 missing CAP_NET_RAW (or CAP_NET_ADMIN for sessions); 130 interrupted (resume with --resume); \
            1 other failures.
            """)

    @Argument(help: "Target list files; '-' or nothing reads stdin.")
    var inputs: [String] = []

    @Flag(name: .customShort("4"), help: "IPv4 only (A records; IPv6 literals skipped).")
    var ipv4 = false
    @Flag(name: .customShort("6"), help: "IPv6 only (AAAA records; IPv4 literals skipped).")
    var ipv6 = false
    @Flag(name: .long, help: "One IPv4 and one IPv6 target per name.")
    var both = false

    @Option(name: .long, help: "Port for lines without one.")
    var dport: UInt16 = 80

    @Option(name: .long, help: "Checks per target: trace (hop-by-hop probe), connect (a crafted MPTCP session), join and add-addr (the session also opens an MP_JOIN subflow / sends an ADD_ADDR).")
    var checks: String = "trace,connect"

    @Option(name: [.short, .long], help: "The probe of the trace check (probe language; default: the MPTCP v1 SYN).")
    var probe: String?
    @Option(name: .long, help: "First TTL.") var minTTL: Int = 1
    @Option(name: .long, help: "Last TTL.") var maxTTL: Int = 16
    @Option(name: .long, help: "Seconds to wait for a probe's reply (sessions: the first retransmission timeout).") var timeout: Double = 1.0
    @Option(name: .long, help: "Extra tries for probes that got no reply (sessions: retransmissions per step).") var retries: Int = 1
    @Flag(name: .long, inversion: .prefixedNo, help: "Confirm TCP answers with an ICMP echo (finds proxies).")
    var proxyCheck = true
    @Flag(name: .long, inversion: .prefixedNo, help: "When a trace stalls, re-run without the suspect option.")
    var blackholeCheck = true

    @Option(name: .long, help: "Sessions: MPTCP version 1, 0, or auto (v1, then v0 when a v1 SYN gets a plain SYN/ACK).")
    var mptcpVersion: String = "1"
    @Flag(name: .long, inversion: .prefixedNo, help: "Sessions: ask for DSS checksums (flag A).")
    var checksum = true
    @Option(name: .long, help: "Sessions: bytes of data to send.")
    var size: Int = 2400
    @Flag(name: .long, help: "Sessions: send an HTTP GET for / instead of data (for web servers).")
    var http = false
    @Flag(name: .long, help: "Sessions: expect the server to echo the data (the lab's servers do).")
    var echo = false

    @Option(name: .long, help: "Packets per second, all targets together.")
    var rate: Double = 100
    @Option(name: .long, help: "Targets in flight at once.")
    var concurrency: Int = 64
    @Option(name: .long, help: "Local ports for probes (outside the kernel's ephemeral range by default).")
    var sportRange: String = "61000-65535"
    @Option(name: .long, help: "Send from this interface.")
    var interface: String?

    @Option(name: .long, help: "File of prefixes never probed (multicast, broadcast, unspecified are always refused).")
    var blocklist: String?
    @Option(name: .long, help: "Scan shard I of N (1-based); every vantage point uses the same list and --seed.")
    var shard: String?
    @Option(name: .long, help: "Seed of the shard permutation.")
    var seed: UInt64 = 0
    @Option(name: .long, help: "Most addresses one CIDR line may expand to.")
    var maxExpand: UInt64 = 65536
    @Option(name: .long, help: "Seconds to wait for a name's addresses.")
    var resolverTimeout: Double = 5
    @Option(name: .long, help: "Names resolved at once.")
    var resolverConcurrency: Int = 16
    @Option(name: .long, help: "Repeated targets are dropped within this many recent targets (the database catches the rest).")
    var dedupWindow: Int = 65536

    @Option(name: [.short, .long], help: "Write JSON Lines here (appended) instead of stdout.")
    var output: String?
    @Option(name: .long, help: "SQLite history database (created when missing).")
    var db: String?
    @Flag(name: .long, help: "Continue the latest unfinished run in --db (or --run ID).")
    var resume = false
    @Option(name: .customLong("run"), help: "The run to resume.")
    var runID: Int64?
    @Flag(name: .long, help: "Refuse the whole list when a line is bad.")
    var strict = false
    @Flag(name: [.short, .long], help: "No progress bar and no summary (errors still go to stderr).")
    var quiet = false
    @Flag(name: .long, help: "Print the final summary as JSON on stderr.")
    var summaryJSON = false

    var family: ScanFamily { ipv4 ? .v4 : ipv6 ? .v6 : both ? .both : .any }
    var lists: [String] { inputs.isEmpty ? ["-"] : inputs }

    func validate() throws {
        if [ipv4, ipv6, both].filter({ $0 }).count > 1 { throw ValidationError("-4, -6 and --both exclude each other") }
        if dport == 0 { throw ValidationError("--dport 0 is not a usable port") }
        guard (1...255).contains(minTTL), (1...255).contains(maxTTL), minTTL <= maxTTL else {
            throw ValidationError("--min-ttl and --max-ttl must lie within 1...255 with min ≤ max")
        }
        guard timeout > 0, timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds") }
        guard (0...10).contains(retries) else { throw ValidationError("--retries must be 0 to 10") }
        guard rate > 0, rate <= 1_000_000 else { throw ValidationError("--rate must be in (0, 1000000] packets/s") }
        guard concurrency >= 1, concurrency <= 100_000 else { throw ValidationError("--concurrency must be 1 to 100000") }
        guard resolverTimeout > 0, resolverTimeout <= 120 else { throw ValidationError("--resolver-timeout must be in (0, 120] seconds") }
        guard (1...1024).contains(resolverConcurrency) else { throw ValidationError("--resolver-concurrency must be 1 to 1024") }
        guard dedupWindow >= 1 else { throw ValidationError("--dedup-window must be at least 1") }
        guard maxExpand >= 1 else { throw ValidationError("--max-expand must be at least 1") }
        _ = try portRange()
        if let s = shard, Shard(s) == nil { throw ValidationError("--shard \(s): expected I/N with 1 ≤ I ≤ N") }
        if resume && db == nil { throw ValidationError("--resume needs --db (the run's history)") }
        if runID != nil && !resume { throw ValidationError("--run is for --resume; reports take --run on `scan report`") }
        if lists.contains("-") && (strict || (Shard(shard ?? "1/1")?.count ?? 1) > 1) {
            throw ValidationError("--strict and --shard read the list twice: give list files, not stdin")
        }
        let names: [CheckName]
        do { names = try CheckName.parseList(checks) } catch { throw ValidationError("\(error)") }
        if names.contains(where: \.isSession) {
            guard VersionChoice(rawValue: mptcpVersion) != nil else { throw ValidationError("--mptcp-version must be 0, 1 or auto") }
            guard (0...1_000_000).contains(size) else { throw ValidationError("--size must be 0 to 1000000 bytes") }
            if http && echo { throw ValidationError("--http and --echo exclude each other (web servers do not echo)") }
        }
        if let p = probe {
            do { _ = try ProbeExpression(parsing: p) } catch let e as ProbeError {
                throw ValidationError("probe: \(e.description)\n  \(p)\n  \(String(repeating: " ", count: max(0, e.column - 1)))^")
            }
        }
    }

    /// The session check with the scan's options; `join` and `add-addr` turn on those steps.
    func sessionCheck(join: Bool, addAddress: Bool) -> SessionCheck {
        let unspecified = IPAddress.v4(IPv4Address(rawValue: 0))
        var c = SessionConfiguration(target: unspecified, source: unspecified, sourcePort: 1, destinationPort: dport)
        c.version = VersionChoice(rawValue: mptcpVersion) ?? .v1
        c.checksum = checksum
        c.payload = SessionConfiguration.defaultPayload(size)
        c.expectEcho = echo
        c.join = join
        c.addAddress = addAddress
        c.timeout = timeout
        c.retries = retries
        guard http else { return SessionCheck(template: c) }
        return SessionCheck(template: c) { address in
            let host = address.isV4 ? "\(address)" : "[\(address)]"
            return SessionConfiguration.httpRequest(host: host, userAgent: "mptracebox/\(MPTraceBox.version)")
        }
    }

    func portRange() throws -> ClosedRange<UInt16> {
        let p = sportRange.split(separator: "-")
        guard p.count == 2, let a = UInt16(p[0]), let b = UInt16(p[1]), a >= 1, a <= b else {
            throw ValidationError("--sport-range \(sportRange): expected LOW-HIGH within 1-65535")
        }
        return a...b
    }

    /// What identifies the run's target set: a resume must match it.
    func parameters() throws -> JSON {
        .object([
            ("inputs", .array(lists.map { .string($0 == "-" ? "-" : URL(fileURLWithPath: $0).standardizedFileURL.path) })),
            ("dport", .number(dport)), ("family", .string(family.rawValue)), ("checks", .string(checks)),
            ("probe", .string(probe ?? ProbeExpression.defaultText)), ("min_ttl", .number(minTTL)), ("max_ttl", .number(maxTTL)),
            ("shard", .string(shard ?? "1/1")), ("seed", .string(String(seed))), ("max_expand", .string(String(maxExpand))),
            ("blocklist", blocklist.map { .string($0) } ?? .null),
            ("mptcp_version", .string(mptcpVersion)), ("checksum", .bool(checksum)), ("size", .number(size)),
            ("http", .bool(http)), ("echo", .bool(echo)),
            ("timeout", .double(timeout)), ("retries", .number(retries)), ("rate", .double(rate)), ("concurrency", .number(concurrency)),
        ])
    }

    /// Parameters that may change between a run and its resume.
    static let tunable: Set<String> = ["timeout", "retries", "rate", "concurrency"]

    func run() throws {
        do {
            let code = try scan()
            if code != 0 { throw ExitCode(code) }
        } catch let e as ExitCode {
            throw e
        } catch let e as ValidationError {
            throw e
        } catch {
            let (message, code) = Self.classify(error)
            printError("mptracebox: \(message)")
            throw ExitCode(code)
        }
    }

    static func classify(_ error: Error) -> (String, Int32) {
        switch error {
        case let e as ScanError:
            switch e {
            case .usage: return (e.description, ScanExit.usage)
            case .input: return (e.description, ScanExit.noInput)
            case .store, .output: return (e.description, ScanExit.ioError)
            case .network: return (e.description, 1)
            }
        case let e as PrivilegeError: return (e.description, ScanExit.privileges)
        case let e as NetIOError: return (e.message, e.message.contains("CAP_NET") ? ScanExit.privileges : 1)
        default: return ("\(error)", 1)
        }
    }

    func scan() throws -> Int32 {
        let checkNames = try CheckName.parseList(checks)
        let parsedProbe = try probe.map(ProbeExpression.init(parsing:)) ?? .default
        var feedSettings = FeedSettings(inputs: lists, defaultPort: dport, family: family)
        if let b = blocklist {
            guard let text = try? String(contentsOfFile: b, encoding: .utf8) else {
                throw ScanError.input("cannot read blocklist \(b)")
            }
            feedSettings.blocklist = try Blocklist(text: text, origin: b)
        }
        feedSettings.shard = shard.flatMap(Shard.init) ?? .all
        feedSettings.seed = seed
        feedSettings.maxExpand = maxExpand
        feedSettings.resolverTimeout = resolverTimeout
        feedSettings.resolverConcurrency = resolverConcurrency
        feedSettings.dedupWindow = dedupWindow

        // The counting pass (files only): --strict, sharding and the progress bar's total.
        var count: ListCount?
        if !lists.contains("-") {
            let c = try ListCount.count(feedSettings)
            if strict && c.badLines > 0 {
                for e in c.firstErrors { printError("mptracebox: \(e)") }
                printError("mptracebox: \(c.badLines) bad line\(c.badLines == 1 ? "" : "s"); --strict: nothing probed")
                return ScanExit.badInput
            }
            count = c
        }

        // The store and the run.
        let store = try db.map { try ScanStore(path: $0) }
        let params = try parameters()
        var current: Int64 = 0
        if let s = store {
            if resume {
                guard let r = try runID.map({ try s.run($0) }) ?? s.latestRun(unfinished: true) else {
                    throw ScanError.usage(runID.map { "no run \($0) in \(db!)" } ?? "no unfinished run in \(db!) to resume")
                }
                guard r.status != "done" && r.status != "partial" else {
                    throw ScanError.usage("run \(r.id) is finished (\(r.status)); nothing to resume")
                }
                try Self.checkResumable(stored: r.parameters, current: params, run: r.id)
                current = r.id
                try s.markRunning(current)
                if let o = output { try JSONLinesWriter.reconcile(path: o, run: current, store: s) }
            } else {
                current = try s.beginRun(parameters: params, vantage: vantage(), now: Date().timeIntervalSince1970)
            }
        }
        let writer = try output.map { try JSONLinesWriter(path: $0) } ?? JSONLinesWriter()

        // The trace check and the network: one capture and one injector for every target.
        var template = TraceConfiguration(target: .v4(IPv4Address(rawValue: 0)), source: .v4(IPv4Address(rawValue: 0)),
                                          sourcePort: 1, destinationPort: dport, probe: parsedProbe)
        template.minTTL = minTTL
        template.maxTTL = maxTTL
        template.timeout = timeout
        template.retries = retries
        template.rate = max(rate, 100)
        template.checkProxy = proxyCheck
        template.checkBlackhole = blackholeCheck
        var checkList: [ScanCheck] = []
        if checkNames.contains(.trace) { checkList.append(TraceCheck(template: template)) }
        if checkNames.contains(where: \.isSession) { checkList.append(sessionCheck(join: checkNames.contains(.join), addAddress: checkNames.contains(.addAddr))) }
        let sessionCheck = checkList.firstIndex { $0 is SessionCheck }
        let ports = try portRange()
        // A short snap length (probes, quotes and session segments fit) and a large ring: bursts
        // of replies must not overflow the capture. Injected packets carry the RST guard's mark.
        let network = try LiveNetwork(options: LiveNetwork.Options(filter: Self.captureFilter(ports), mark: sessionCheck != nil ? RSTGuard.mark : nil,
                                                                   interface: interface, snapLength: 2048, bufferSize: 32 << 20))
        defer { network.close() }

        let fam = family
        let feed = try TargetFeed(settings: feedSettings, indices: count?.indices) { name in
            try Resolver.resolve(name, family: fam == .v4 ? .v4 : fam == .v6 ? .v6 : .any)
        }
        var runnerSettings = ScanRunner.Settings(engine: ScanEngine.Options(rate: rate, concurrency: concurrency, localPorts: ports))
        runnerSettings.batchSize = 256
        let runner = try ScanRunner(settings: runnerSettings, network: network, checks: checkList, feed: feed, store: store,
                                    output: writer, runID: current, sourceAddress: { try Resolver.sourceAddress(toward: $0) },
                                    log: { printError($0) })
        // Sessions: the local kernel must not reset the crafted connections. Only the sessions'
        // ports are guarded; the trace check's SYN/ACKs are still reset by the kernel, as they should be.
        // SIGINT/SIGTERM stop the scan (below), which then removes the guard; a SIGKILLed scan's
        // guard is swept by the next guard's start.
        var guardTable: RSTGuard?
        if let i = sessionCheck {
            guardTable = try RSTGuard(portRanges: runner.engine.portRanges(ofCheck: i), removeOnSignal: false)
        }
        defer { guardTable?.remove() }

        signal(SIGINT) { _ in scanStopRequested = 1 }
        signal(SIGTERM) { _ in scanStopRequested = 1 }
        signal(SIGPIPE, SIG_IGN)
        let bar = !quiet && isatty(2) != 0 ? ProgressBar() : nil
        var total: Int?
        if let c = count { total = Int(c.indices) / feedSettings.shard.count }
        let summary = try runner.run(total: total, shouldStop: { scanStopRequested != 0 }, progress: bar.map { b in { b.show($0) } })
        bar?.finish()
        if let stats = try? network.captureStatistics(), stats.dropped > 0 {
            printError("mptracebox: warning: the capture dropped \(stats.dropped) packets (the host could not keep up with --rate \(rate)); verdicts may show false timeouts")
        }
        try store?.finishRun(current, status: summary.outcome.rawValue, stats: summary.json, now: Date().timeIntervalSince1970)
        if summaryJSON {
            printError(summary.json.rendered())
        } else if !quiet {
            printError(Self.summaryText(summary, store: db != nil))
        }
        switch summary.outcome {
        case .done: return ScanExit.done
        case .partial: return ScanExit.partial
        case .interrupted: return ScanExit.interrupted
        }
    }

    static func checkResumable(stored: String, current: JSON, run: Int64) throws {
        guard case .object(let now) = current else { return }
        for (k, v) in now where !tunable.contains(k) {
            // The stored document was rendered from the same builder: compare member texts.
            let needle = "\"\(k)\":\(v.rendered())"
            guard stored.contains(needle) else {
                throw ScanError.usage("run \(run) was started with a different \(k) (stored parameters: \(stored)); resume with the same list and options, or start a new run")
            }
        }
    }

    func vantage() -> JSON {
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count)
        return .compact([("host", .string(String(cString: host))), ("interface", interface.map { .string($0) } ?? .null),
                         ("version", .string(MPTraceBox.version))])
    }

    /// ICMP errors and echo replies (both families) and TCP to the scan's local ports.
    static func captureFilter(_ ports: ClosedRange<UInt16>) -> String {
        "(icmp and (icmp[0] = 11 or icmp[0] = 3 or icmp[0] = 12 or icmp[0] = 0))"
            + " or (icmp6 and (ip6[40] = 1 or ip6[40] = 2 or ip6[40] = 3 or ip6[40] = 4 or ip6[40] = 129))"
            + " or (tcp and dst portrange \(ports.lowerBound)-\(ports.upperBound))"
    }

    static func summaryText(_ s: ScanSummary, store: Bool) -> String {
        var parts = ["\(s.recorded) recorded (\(s.ok) ok, \(s.unresolved) unresolved, \(s.errors) errors)"]
        if s.alreadyRecorded > 0 { parts.append("\(s.alreadyRecorded) already recorded") }
        if s.badLines > 0 { parts.append("\(s.badLines) bad lines") }
        if s.duplicates > 0 { parts.append("\(s.duplicates) duplicates") }
        if s.blocked > 0 { parts.append("\(s.blocked) blocked") }
        if s.filtered > 0 { parts.append("\(s.filtered) of another family") }
        let pps = s.seconds > 0 ? Double(s.packetsSent) / s.seconds : 0
        return "mptracebox scan\(store ? " run \(s.run)" : ""): \(s.outcome.rawValue): " + parts.joined(separator: ", ")
            + String(format: "; %d packets in %.1f s (%.0f/s)", s.packetsSent, s.seconds, pps)
    }
}

/// A one-line progress bar on stderr (TTY only).
final class ProgressBar {
    private var shown = false

    func show(_ p: ScanProgress) {
        let rate = p.elapsed > 0 ? Double(p.done) / p.elapsed : 0
        var line = ""
        if let t = p.total, t > 0 {
            let f = min(1, Double(p.done) / Double(t))
            let filled = Int(f * 30)
            line += "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled) + "] "
            line += "\(p.done)/\(t) \(Int(f * 100))%"
            if rate > 0 {
                let eta = Int(Double(max(0, t - p.done)) / rate)
                line += String(format: " ETA %d:%02d", eta / 60, eta % 60)
            }
        } else {
            line += "\(p.done) done"
        }
        line += String(format: "  %.1f targets/s  %.0f pkt/s  %d in flight", rate, p.elapsed > 0 ? Double(p.packetsSent) / p.elapsed : 0, p.inFlight)
        fputs("\r\u{1b}[K" + line, stderr)
        shown = true
    }

    func finish() { if shown { fputs("\n", stderr) } }
}

struct ScanReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Counts per verdict and finding, and the hops where interference appears, for one run.")

    @Option(name: .long, help: "The SQLite history.") var db: String
    @Option(name: .customLong("run"), help: "The run (default: the latest).") var runID: Int64?
    @Option(name: .long, help: "How many hops to list.") var top: Int = 10
    @Flag(name: .long, help: "Print JSON (schema mptracebox.scan-report/1).") var json = false

    func run() throws {
        do {
            guard FileManager.default.fileExists(atPath: db) else { throw ScanError.input("no database at \(db)") }
            let store = try ScanStore(path: db)
            guard let id = try runID ?? store.latestRun()?.id else { throw ScanError.usage("\(db) holds no run") }
            let r = try ScanRunReport.load(store, run: id, topHops: top)
            print(json ? r.json.rendered(pretty: true) : r.text, terminator: json ? "\n" : "")
        } catch let e as ExitCode { throw e } catch {
            let (m, c) = ScanRunCommand.classify(error)
            printError("mptracebox: \(m)")
            throw ExitCode(c)
        }
    }
}

struct ScanDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Targets whose verdict or findings changed between two runs (and those only one run has).",
        discussion: "Exit status: 0 no change, 3 changes found, 64 usage, 66/74 database problems.")

    @Option(name: .long, help: "The SQLite history.") var db: String
    @Argument(help: "The earlier run.") var runA: Int64
    @Argument(help: "The later run.") var runB: Int64
    @Flag(name: .long, help: "Print JSON (schema mptracebox.scan-diff/1).") var json = false

    func run() throws {
        do {
            guard FileManager.default.fileExists(atPath: db) else { throw ScanError.input("no database at \(db)") }
            let store = try ScanStore(path: db)
            let d = try ScanRunDiff.load(store, runA, runB)
            print(json ? d.json.rendered(pretty: true) : d.text, terminator: json ? "\n" : "")
            if !d.changes.isEmpty { throw ExitCode(ScanExit.partial) }
        } catch let e as ExitCode { throw e } catch {
            let (m, c) = ScanRunCommand.classify(error)
            printError("mptracebox: \(m)")
            throw ExitCode(c)
        }
    }
}
