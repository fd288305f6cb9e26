import ArgumentParser
import Foundation
import Wire
import NetIO
import Session
import Report

struct ConnectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Run a complete MPTCP session and classify what the path did to it.",
        discussion: """
            Crafted mode (default) is a userspace MPTCP client over raw sockets: MP_CAPABLE handshake \
            with random keys, data with DSS mappings and checksums, a second subflow with MP_JOIN, an \
            ADD_ADDR, and a DATA_FIN close. Each step is checked and the session gets one verdict \
            (docs/sessions.md). While it runs, an nftables table keeps the local kernel from \
            resetting the crafted connection (needs CAP_NET_ADMIN); it is removed on exit.

            Kernel mode (--mode kernel) connects with the host's own MPTCP stack (IPPROTO_MPTCP), \
            sends the same data and reads the echo, then reports what the kernel says while the \
            connection is open (TCP_IS_MPTCP, MPTCP_INFO, and the sock_diag view of `ss -M` and \
            `ss -ti`: the MPTCP socket and its subflows) and what a capture of the connection shows \
            (MP_CAPABLE on SYN, SYN/ACK, third ACK and first data; DSS both ways), so a fallback is \
            explained by the packet that caused it. Capturing needs CAP_NET_RAW; without it the \
            session still runs, without the wire view (unless --pcap is given). --join, --add-addr, \
            --mptcp-version and --checksum apply to crafted mode only: the kernel follows its own \
            sysctls and path manager, and picks the source address and port itself. When the SYN/ACK \
            to the kernel's MP_CAPABLE SYN comes back plain, TTL-limited copies of that SYN are sent \
            after the connection closed (as crafted mode does; not with --no-inspect, needs \
            CAP_NET_RAW): the routers' quotes tell a SYN stripped on the way (at which hop) from a \
            server without MPTCP.

            Exit status: 0 the session ran (whatever the verdict), 64 usage error, 68 the target \
            cannot be resolved or routed, 77 a capability is missing, 1 other failures.
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable { case crafted, kernel }

    @OptionGroup var target: TargetOptions

    @Option(name: .long, help: "crafted (userspace MPTCP client) or kernel (the host's MPTCP stack).")
    var mode: Mode = .crafted

    @Option(name: .long, help: "MPTCP version: 1, 0, or auto (v1, then v0 when a v1 SYN gets a plain SYN/ACK).")
    var mptcpVersion: String = "1"

    @Flag(name: .long, inversion: .prefixedNo, help: "Ask for DSS checksums (flag A).")
    var checksum = true

    @Option(name: .long, help: "Bytes of data to send (default payload text).")
    var size: Int = 4000

    @Option(name: .long, help: "Send this text instead (\\r\\n and \\n are unescaped).")
    var data: String?

    @Flag(name: .long, help: "Send an HTTP GET for / instead, and do not expect an echo.")
    var http = false

    @Flag(name: .long, inversion: .prefixedNo, help: "Expect the server to echo the data (the lab's servers do).")
    var echo = true

    @Flag(name: .long, inversion: .prefixedNo, help: "Open a second subflow with MP_JOIN.")
    var join = true

    @Option(name: .long, help: "Local address for the MP_JOIN subflow (another interface or path).")
    var joinFrom: String?

    @Option(name: .long, help: "Source port of the MP_JOIN subflow (default: --sport + 1).")
    var joinPort: UInt16?

    @Flag(name: .long, inversion: .prefixedNo, help: "Send an ADD_ADDR and expect its echo.")
    var addAddr = true

    @Flag(name: .long, help: "Send MP_PRIO (backup) on the initial subflow.")
    var prio = false

    @Flag(name: .long, help: "End with MP_FASTCLOSE instead of DATA_FIN.")
    var fastclose = false

    @Flag(name: .long, inversion: .prefixedNo, help: "Locate fallbacks with TTL-limited copies (kernel mode: of the kernel's SYN) and check for proxies (crafted mode).")
    var inspect = true

    @Option(name: .long, help: "First retransmission timeout in seconds.")
    var timeout: Double = 1.0

    @Option(name: .long, help: "Retransmissions per step.")
    var retries: Int = 3

    @Flag(name: .long, help: .hidden)
    var noRstGuard = false

    // Kernel mode test hooks: keep the connection open after the kernel's view was taken (so a
    // test can run `ss` meanwhile), and write the raw sock_diag answers as hex lines (fixtures).
    @Option(name: .long, help: .hidden)
    var hold: Double?

    @Option(name: .long, help: .hidden)
    var diagRaw: String?

    @Flag(name: .long, help: "Print the JSON document (schema mptracebox.session/1).")
    var json = false

    @Option(name: .long, help: "Write every packet sent and received to this pcap file (kernel mode: the connection's packets as captured).")
    var pcap: String?

    func validate() throws {
        guard VersionChoice(rawValue: mptcpVersion) != nil else { throw ValidationError("--mptcp-version must be 0, 1 or auto") }
        guard (0...10_000_000).contains(size) else { throw ValidationError("--size must be 0 to 10000000 bytes") }
        guard timeout > 0, timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds") }
        guard (0...10).contains(retries) else { throw ValidationError("--retries must be 0 to 10") }
        if let j = joinFrom, IPAddress(j) == nil { throw ValidationError("--join-from \(j) is not an IPv4 or IPv6 address") }
        if joinPort == 0 { throw ValidationError("--join-port 0 is not a usable port") }
        if http && data != nil { throw ValidationError("give --http or --data, not both") }
        if mode == .kernel && (fastclose || prio) { throw ValidationError("--fastclose and --prio need --mode crafted") }
        if let h = hold, !(0...60).contains(h) { throw ValidationError("--hold must be 0 to 60 seconds") }
    }

    func payload(host: String) -> [UInt8] {
        if http { return SessionConfiguration.httpRequest(host: host, userAgent: "mptracebox/\(MPTraceBox.version)") }
        if let d = data { return Array(d.replacingOccurrences(of: "\\r", with: "\r").replacingOccurrences(of: "\\n", with: "\n").utf8) }
        return SessionConfiguration.defaultPayload(size)
    }

    func run() throws {
        try runReportingErrors {
            let (targetAddress, sourceAddress) = try target.resolve()
            if mode == .kernel {
                try runKernel(targetAddress)
                return
            }
            var config = SessionConfiguration(target: targetAddress, source: sourceAddress,
                                              sourcePort: target.sourcePort, destinationPort: target.dport)
            config.version = VersionChoice(rawValue: mptcpVersion) ?? .v1
            config.checksum = checksum
            config.payload = payload(host: target.target)
            config.expectEcho = echo && !http
            config.join = join
            config.joinSource = joinFrom.flatMap(IPAddress.init)
            config.joinSourcePort = joinPort
            config.addAddress = addAddr
            config.priority = prio
            config.fastClose = fastclose
            config.inspectPath = inspect
            config.timeout = timeout
            config.retries = retries
            do { try config.validate() } catch let e as SessionError { throw CLIError.usage(e.description) }

            // --no-rst-guard (hidden) exists to show, in tests, what the guard prevents.
            let guardTable = noRstGuard ? nil : try RSTGuard(ports: config.localPorts)
            defer { guardTable?.remove() }
            var netOptions = LiveNetwork.Options(filter: SessionEngine.captureFilter(config), mark: RSTGuard.mark,
                                                 interface: target.interface, pcapPath: pcap)
            if let j = config.joinSource, j != config.source { netOptions.boundSources = [j] }
            let network = try LiveNetwork(options: netOptions)
            defer { network.close() }
            let record = try SessionEngine(configuration: config, network: network).run()
            let verdicts = SessionClassifier.classify(record)
            if json {
                print(SessionReport.json(record, verdicts).rendered(pretty: true))
            } else {
                print(SessionReport.text(record, verdicts))
            }
        }
    }

    /// Kernel mode: the host's MPTCP stack does the session; NetIO observes it, Session judges it.
    func runKernel(_ targetAddress: IPAddress) throws {
        let data = payload(host: target.target)
        let expectEcho = echo && !http
        var options = KernelMPTCPClient.Options(target: targetAddress, port: target.dport, payload: data,
                                                timeout: timeout * Double(1 + retries), expectEcho: expectEcho,
                                                captureDevice: target.interface ?? "any", pcapPath: pcap)
        options.hold = hold ?? 0
        let r = try KernelMPTCPClient.run(options)
        if let path = diagRaw {
            let text = r.diagDatagrams.map { $0.map { String(format: "%02x", $0) }.joined() }.joined(separator: "\n") + "\n"
            do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch { throw CLIError.usage("cannot write --diag-raw \(path): \(error)") }
        }
        var facts = KernelSessionFacts(outcome: KernelSessionFacts.Outcome(rawValue: r.outcome.rawValue) ?? .timeout,
                                       target: targetAddress, port: target.dport)
        facts.error = r.error
        facts.localAddress = r.localAddress
        facts.localPort = r.localPort
        facts.payload = data
        facts.expectEcho = expectEcho
        facts.bytesSent = r.bytesSent
        facts.received = r.received
        facts.established = r.established
        facts.atClose = r.atClose
        facts.captured = r.captureError != nil && r.packets.isEmpty ? nil : r.packets
        facts.captureError = r.captureError
        facts.captureDropped = r.captureDropped
        facts.inspectPath = inspect
        var analysis = KernelSessionReport.analyse(facts)
        if let request = analysis.pathCheckRequest {
            // The connection is closed: copies of its SYN (TTL below the server's distance) expire
            // at the routers, whose quotes show where MP_CAPABLE went.
            do {
                let network = try LiveNetwork(options: LiveNetwork.Options(filter: "icmp or icmp6", interface: target.interface))
                defer { network.close() }
                facts.pathCheck = KernelSessionReport.checkPath(syn: request.syn, maxTTL: request.maxTTL, network: network, timeout: timeout)
            } catch {
                var check = KernelPathCheck()
                check.error = "\(error)"
                facts.pathCheck = check
            }
            analysis = KernelSessionReport.analyse(facts)
        }
        print(json ? KernelSessionReport.json(facts, analysis).rendered(pretty: true) : KernelSessionReport.text(facts, analysis))
    }
}
