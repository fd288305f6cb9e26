// Release-mode benchmarks: `swift run -c release mptracebox-bench wire|lab|trace|scan-input|scan-live`.
// Each figure is printed as one `metric value` line, so scripts and notes can quote them.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Lab
import Wire
import NetIO
import Session

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `body` in batches until `seconds` have passed; returns operations per second.
/// The body returns a value folded into a sink so the optimizer cannot drop the work.
@inline(never)
func measure(seconds: Double = 1.0, _ body: () throws -> Int) rethrows -> (perSecond: Double, sink: Int) {
    var sink = 0
    // Warm up (caches, first allocations).
    for _ in 0..<1000 { sink &+= try body() }
    var iterations = 0
    let start = now()
    var elapsed = 0.0
    repeat {
        for _ in 0..<10_000 { sink &+= try body() }
        iterations += 10_000
        elapsed = now() - start
    } while elapsed < seconds
    return (Double(iterations) / elapsed, sink)
}

func report(_ name: String, _ r: (perSecond: Double, sink: Int)) {
    print("\(name) \(Int(r.perSecond))")
    if r.sink == 42 { print("# sink \(r.sink)") } // keeps the sink alive
}

func wireBenchmarks() throws {
    let client = IPv4Address(198, 18, 0, 1), server = IPv4Address(198, 18, 3, 2)
    var ip = IPv4Header(source: client, destination: server, protocol: .tcp, ttl: 64)
    ip.dontFragment = true
    let synOptions: [TCPOption] = [
        .maximumSegmentSize(1460), .sackPermitted, .timestamps(value: 0x1234_5678, echoReply: 0),
        .noOperation, .windowScale(7), .mptcp(.capable(MPCapable(version: 1, flags: MPCapable.hmacSHA))),
    ]
    let syn = IPPacket(ip: .v4(ip), transport: .tcp(TCPSegment(header: TCPHeader(
        sourcePort: 40000, destinationPort: 80, sequenceNumber: 1, flags: .syn, window: 64240, options: synOptions))))
    let synBytes = try syn.serialized(finalize: true)

    report("syn_parse_per_s", try measure { try IPPacket.parse(synBytes).ip.headerLength })
    report("syn_serialize_per_s", try measure { try syn.serialized(finalize: true).count })

    let payload = [UInt8](repeating: 0x61, count: 1400)
    let mapping = DSS.Mapping(dataSequenceNumber: 0x1_0000_0001, subflowSequenceNumber: 1,
                              dataLevelLength: 1400, checksum: Checksum.dss(dataSequenceNumber: 0x1_0000_0001,
                                                                           subflowSequenceNumber: 1, dataLevelLength: 1400, payload: payload))
    let dataOptions: [TCPOption] = [.noOperation, .noOperation, .timestamps(value: 1, echoReply: 2),
                                    .mptcp(.dss(DSS(dataACK: 0x1_0000_0000, dataACK64: true, mapping: mapping)))]
    let data = IPPacket(ip: .v4(ip), transport: .tcp(TCPSegment(header: TCPHeader(
        sourcePort: 40000, destinationPort: 80, sequenceNumber: 2, acknowledgmentNumber: 3,
        flags: [.ack, .psh], window: 502, options: dataOptions), payload: payload)))
    let dataBytes = try data.serialized(finalize: true)
    report("dss_parse_per_s", try measure { try IPPacket.parse(dataBytes).missingBytes })
    report("dss_serialize_per_s", try measure { try data.serialized(finalize: true).count })

    var probe = syn
    probe.ip = .v4({ var h = ip; h.ttl = 1; return h }())
    let quote = try probe.serialized(finalize: true)
    let icmp = ICMPMessage.error(family: .v4, type: ICMPv4Type.timeExceeded, code: 0, quoting: quote)
    let router = IPv4Header(source: IPv4Address(198, 18, 1, 1), destination: client, protocol: .icmp)
    let icmpBytes = try IPPacket(ip: .v4(router), transport: .icmp(icmp)).serialized(finalize: true)
    report("icmp_time_exceeded_parse_per_s", try measure {
        try IPPacket.parse(icmpBytes).icmp?.quote?.packet?.ip.headerLength ?? 0
    })
}

/// Brings up a lab (client - router - kernel MPTCP echo server) and runs crafted sessions from
/// the client namespace (a child of this binary, `session-run`), so no process start is timed.
func sessionBenchmark(count: Int) throws {
    let name = "bench" + String(UInt32.random(in: 0...0xfffff), radix: 36)
    let lab = try Lab.up(try LabSpec(name: name, hops: ["router"], servers: ["mptcp:80"]), ephemeral: true)
    defer { try? lab.down() }
    let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    let before = try lab.mptcpCounters(.server)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
    p.arguments = ["netns", "exec", lab.namespace(.client), exe, "session-run", lab.serverIPv4, "\(count)"]
    try p.run()
    p.waitUntilExit()
    let after = try lab.mptcpCounters(.server)
    for k in ["MPTcpExtMPCapableACKRX", "MPTcpExtMPJoinAckRx", "MPTcpExtDataCsumErr"] {
        print("server_\(k.replacingOccurrences(of: "MPTcpExt", with: "")) \(Int64(after[k] ?? 0) - Int64(before[k] ?? 0))")
    }
    if p.terminationStatus != 0 { exit(1) }
}

/// Runs `count` sessions back to back (inside the client namespace) and prints the rate.
func sessionRun(target: String, count: Int) throws {
    guard let t = IPAddress(target) else { print("bad target \(target)"); exit(2) }
    let source = try Resolver.sourceAddress(toward: t)
    let base = UInt16.random(in: 20000...40000)
    var configs: [SessionConfiguration] = []
    for i in 0..<count {
        var c = SessionConfiguration(target: t, source: source, sourcePort: base &+ UInt16(3 * i), destinationPort: 80)
        c.inspectPath = false
        c.timeout = 0.5
        c.linger = 0
        configs.append(c)
    }
    let guardTable = try RSTGuard(ports: configs.flatMap(\.localPorts))
    defer { guardTable.remove() }
    let network = try LiveNetwork(options: LiveNetwork.Options(
        filter: "(tcp and src host \(t) and src port 80) or icmp or icmp6", mark: RSTGuard.mark))
    defer { network.close() }
    var verdicts: [String: Int] = [:]
    let start = now()
    for c in configs {
        let r = try SessionEngine(configuration: c, network: network).run()
        let v = SessionClassifier.classify(r)
        verdicts[v.session.id + "+" + (v.join?.id ?? "-"), default: 0] += 1
    }
    let elapsed = now() - start
    print("sessions \(count)")
    print("sessions_per_s \(String(format: "%.1f", Double(count) / elapsed))")
    for (k, n) in verdicts.sorted(by: { $0.key < $1.key }) { print("verdict \(k) \(n)") }
}

func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }

/// `lab`: brings the six-hop, two-middlebox scenario up and down a few times (needs root).
func labBenchmarks(runs: Int = 5) throws {
    var ups: [Double] = [], downs: [Double] = []
    for i in 0..<runs {
        let spec = try Scenario.named("sixhop").spec(name: "b\(getpid() % 100000)x\(i)")
        let lab = try Lab.up(spec, ephemeral: true)
        ups.append(lab.upSeconds)
        let start = now()
        try lab.down()
        downs.append(now() - start)
    }
    print("lab_up_sixhop_seconds_median \(String(format: "%.3f", median(ups)))")
    print("lab_up_sixhop_seconds_max \(String(format: "%.3f", ups.max() ?? 0))")
    print("lab_down_sixhop_seconds_median \(String(format: "%.3f", median(downs)))")
}

/// `trace`: a 10-hop lab path (9 routers, the 5th silent, then the server), traced by the
/// mptracebox binary in parallel and in --sequential mode with the same timeout and retries.
func traceBenchmarks(silent: [Int] = [4], suffix: String = "", timeout: Double = 1.0, retries: Int = 2, runs: Int = 3) throws {
    var hops = Array(repeating: "router", count: 9)
    for i in silent { hops[i] = "silent" }
    let spec = try LabSpec(name: "bt\(getpid() % 100000)", hops: hops)
    let lab = try Lab.up(spec, ephemeral: true)
    defer { try? lab.down() }
    let binary = try LabBinary.path()
    func run(_ extra: [String]) throws -> (seconds: Double, reached: Bool, probes: Int) {
        let start = now()
        let out = try lab.run(.client, [binary, "trace", "--json", "-n", "--max-ttl", "16", "--timeout", "\(timeout)",
                                        "--retries", "\(retries)", "--no-proxy-check"] + extra + [lab.serverIPv4])
        let elapsed = now() - start
        guard out.status == 0, let obj = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] else {
            throw BenchError("trace failed: \(out.stderr)")
        }
        let reached = (obj["destination"] as? [String: Any])?["reached"] as? Bool ?? false
        // The trace's own duration excludes process start-up; print both.
        return (obj["duration_s"] as? Double ?? elapsed, reached, obj["probes_sent"] as? Int ?? 0)
    }
    _ = try run([])  // warm-up: neighbour caches, page cache
    var parallel: [Double] = [], sequential: [Double] = []
    var probesParallel = 0, probesSequential = 0
    for _ in 0..<runs {
        let p = try run([])
        let s = try run(["--sequential"])
        guard p.reached, s.reached else { throw BenchError("the destination was not reached") }
        parallel.append(p.seconds); sequential.append(s.seconds)
        probesParallel = p.probes; probesSequential = s.probes
    }
    let rtt = try lab.run(.client, ["ping", "-c", "3", "-i", "0.2", "-q", lab.serverIPv4]).stdout
    let avgRTT = rtt.split(separator: "=").last.flatMap { $0.split(separator: "/").dropFirst().first }.flatMap { Double($0) } ?? 0
    if suffix.isEmpty {
        print("trace_hops 10")
        print("trace_timeout_s \(timeout)")
        print("trace_retries \(retries)")
        print("path_rtt_ms \(String(format: "%.3f", avgRTT))")
    }
    print("parallel_s\(suffix) \(String(format: "%.3f", median(parallel)))")
    print("sequential_s\(suffix) \(String(format: "%.3f", median(sequential)))")
    print("speedup\(suffix) \(String(format: "%.2f", median(sequential) / median(parallel)))")
    print("parallel_probes\(suffix) \(probesParallel)")
    print("sequential_probes\(suffix) \(probesSequential)")
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "wire":
    try wireBenchmarks()
case "session":
    try sessionBenchmark(count: args.count > 1 ? Int(args[1]) ?? 100 : 100)
case "session-run" where args.count == 3:
    try sessionRun(target: args[1], count: Int(args[2]) ?? 100)
case "lab":
    try labBenchmarks()
case "trace":
    // The issue's figure: one silent router. Then two, to show how sequential cost grows with
    // silent hops while parallel stays at one timeout.
    try traceBenchmarks()
    try traceBenchmarks(silent: [3, 6], suffix: "_2silent")
case "scan-input":
    try scanInputBenchmark(lines: args.dropFirst().first.flatMap { Int($0) } ?? 1_000_000, withStore: !args.contains("--no-db"))
case "scan-live":
    // --checks LIST: what runs per target (default trace, the rate goal's figure; trace,connect adds a session each).
    let checks = args.firstIndex(of: "--checks").flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil } ?? "trace"
    let numbers = args.dropFirst().filter { $0 != checks }.compactMap { Double($0) }
    try scanLiveBenchmark(targets: Int(numbers.first ?? 10_000), rates: numbers.count > 1 ? Array(numbers.dropFirst()) : [2000, 10000],
                          shardOfMillion: args.contains("--million"), checks: checks)
default:
    print("usage: mptracebox-bench wire|lab|trace|session [COUNT]|scan-input [LINES] [--no-db]|scan-live [TARGETS RATE...] [--million] [--checks LIST]")
    print("  session  crafted MPTCP sessions per second against a lab's kernel server (root; -c release)")
    print("  wire   parse/serialize rates of the wire formats (run with -c release)")
    print("  lab    lab up/down time of the six-hop, two-middlebox scenario (root)")
    print("  trace  parallel vs --sequential trace of a 10-hop lab path with a silent router (root)")
    print("  scan-input  the scan pipeline on an instant in-process network: targets/s, CPU and RSS for LINES lines")
    print("  scan-live   the release scanner against the lab's AnyIP server: achieved rate, CPU per target (root)")
    exit(args.isEmpty ? 0 : 2)
}
