import ArgumentParser
import Foundation
import Wire
import Probe
import Trace
import NetIO
import Report

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Trace which hop changes what in a TCP/MPTCP probe.",
        discussion: """
            Sends the probe at every TTL from --min-ttl to --max-ttl at once (paced by --rate), reads \
            the ICMP quotes that come back and diffs each against what was sent. Each TTL waits one \
            --timeout from its first send; --retries are spread inside that window. --sequential \
            probes one TTL at a time, like tracebox.

            The default probe is what a Linux MPTCP v1 client sends:
              \(ProbeExpression.defaultText)
            See docs/probes.md for the probe language.

            Exit status: 0 the trace ran (whatever it found), 64 usage error, 68 the target cannot \
            be resolved or routed, 77 a capability is missing (CAP_NET_RAW), 1 other failures.
            """)

    @OptionGroup var target: TargetOptions

    @Option(name: [.short, .long], help: "The probe to send (probe language).")
    var probe: String?

    @Option(name: .long, help: "Read probes from a file: one probe expression per line, # comments.")
    var probeFile: String?

    @Option(name: .long, help: "First TTL / hop limit.")
    var minTTL: Int = 1

    @Option(name: .long, help: "Last TTL / hop limit.")
    var maxTTL: Int = 30

    @Option(name: .long, help: "Seconds to wait for a probe's reply.")
    var timeout: Double = 1.0

    @Option(name: .long, help: "Extra tries for probes that got no reply.")
    var retries: Int = 2

    @Option(name: .long, help: "Packets per second.")
    var rate: Double = 100

    @Flag(name: .long, help: "One TTL at a time (tracebox-like), for comparison.")
    var sequential = false

    @Flag(name: .short, help: "Do not look up hop names.")
    var numeric = false

    @Flag(name: .long, help: "Print the JSON document (schema mptracebox.trace/1); one per line with --probe-file.")
    var json = false

    @Option(name: .long, help: "Write every probe sent and packet received to this pcap file.")
    var pcap: String?

    @Flag(name: .long, inversion: .prefixedNo, help: "Confirm TCP answers with an ICMP echo at the same TTL (finds proxies).")
    var proxyCheck = true

    @Flag(name: .long, inversion: .prefixedNo, help: "When the trace stalls, re-run without the suspect option (finds blackholes).")
    var blackholeCheck = true

    func validate() throws {
        if probe != nil && probeFile != nil { throw ValidationError("give -p/--probe or --probe-file, not both") }
        guard (1...255).contains(minTTL), (1...255).contains(maxTTL), minTTL <= maxTTL else {
            throw ValidationError("--min-ttl and --max-ttl must lie within 1...255 with min ≤ max")
        }
        guard timeout > 0, timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds") }
        guard (0...10).contains(retries) else { throw ValidationError("--retries must be 0 to 10") }
        guard rate > 0, rate <= 1_000_000 else { throw ValidationError("--rate must be in (0, 1000000] packets/s") }
        if let p = probe {
            let expression: ProbeExpression
            do { expression = try ProbeExpression(parsing: p) } catch let e as ProbeError {
                throw ValidationError("probe: \(e.description)\n  \(p)\n  \(String(repeating: " ", count: max(0, e.column - 1)))^")
            }
            // Build it once with placeholder addresses: the option budget and field widths are checked before anything is sent.
            let (src, dst): (IPAddress, IPAddress) = expression.ip.family == .v6
                ? (IPAddress("2001:db8::1")!, IPAddress("2001:db8::2")!) : (IPAddress("198.18.0.1")!, IPAddress("198.18.0.2")!)
            do {
                _ = try expression.packet(source: src, destination: dst, sourcePort: 1, destinationPort: target.dport, sequenceNumber: 0)
            } catch let e as WireError {
                throw ValidationError("probe: \(e.message)")
            } catch let e as ProbeError {
                throw ValidationError("probe: \(e.description)")
            }
        }
    }

    func probes() throws -> [ProbeExpression] {
        guard let path = probeFile else { return [try probe.map(ProbeExpression.init(parsing:)) ?? .default] }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError.usage("cannot read probe file \(path)")
        }
        var out: [ProbeExpression] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?
                .trimmingCharacters(in: .whitespaces) ?? ""
            if line.isEmpty { continue }
            do { out.append(try ProbeExpression(parsing: line)) } catch let e as ProbeError {
                throw CLIError.usage("\(path):\(n + 1):\(e.column): \(e.message)")
            }
        }
        guard !out.isEmpty else { throw CLIError.usage("\(path) holds no probe") }
        return out
    }

    func run() throws {
        try runReportingErrors {
            let probes = try probes()
            let (targetAddress, sourceAddress) = try target.resolve()
            let sport = target.sourcePort
            for (i, p) in probes.enumerated() {
                var config = TraceConfiguration(target: targetAddress, source: sourceAddress,
                                                sourcePort: sport &+ UInt16(truncatingIfNeeded: 2 * i), destinationPort: target.dport, probe: p)
                config.minTTL = minTTL
                config.maxTTL = maxTTL
                config.timeout = timeout
                config.retries = retries
                config.rate = rate
                config.sequential = sequential
                config.checkProxy = proxyCheck
                config.checkBlackhole = blackholeCheck
                config.sequenceBase = UInt32.random(in: 0...UInt32.max) & 0xffff_0000
                config.identificationBase = UInt16.random(in: 0...UInt16.max) & 0xff00
                config.timestampValue = UInt32.random(in: 1...UInt32.max)
                try config.validate()

                let pcapPath = pcap.map { probes.count > 1 ? "\($0).\(i + 1)" : $0 }
                let network = try LiveNetwork(options: LiveNetwork.Options(
                    filter: TraceEngine.captureFilter(config), interface: target.interface, pcapPath: pcapPath))
                defer { network.close() }
                let result = try TraceEngine(configuration: config, network: network).run()
                let names = numeric ? [:] : Resolver.reverseNames(result.hops.compactMap(\.address))
                if json {
                    print(TraceReport.json(result, names: names).rendered(pretty: probes.count == 1))
                } else {
                    print(TraceReport.text(result, names: names, color: isatty(1) != 0))
                }
            }
        }
    }
}
