// Release-mode benchmarks: `swift run -c release mptracebox-bench wire`.
// Each figure is printed as one `metric value` line, so scripts and notes can quote them.
#if canImport(Glibc)
import Glibc
#endif
import Wire
import Foundation
import Lab
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

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "wire":
    try wireBenchmarks()
case "session":
    try sessionBenchmark(count: args.count > 1 ? Int(args[1]) ?? 100 : 100)
case "session-run" where args.count == 3:
    try sessionRun(target: args[1], count: Int(args[2]) ?? 100)
default:
    print("usage: mptracebox-bench wire | session [COUNT]")
    print("  wire     parse/serialize rates of the wire formats (run with -c release)")
    print("  session  crafted MPTCP sessions per second against a lab's kernel server (root; -c release)")
    exit(args.isEmpty ? 0 : 2)
}
