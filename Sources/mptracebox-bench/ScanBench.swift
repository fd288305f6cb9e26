// `scan` benchmarks: the scan pipeline's throughput and memory on an instant in-process network
// (`scan-input`), and the real scanner against the lab's AnyIP server (`scan-live`, root).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Wire
import PacketIO
import Trace
import Scan
import Lab

/// Peak resident set size of this process (or of waited-for children), in MiB.
func peakRSS(children: Bool = false) -> Double {
    var u = rusage()
    getrusage(children ? RUSAGE_CHILDREN.rawValue : RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_maxrss) / 1024
}

func currentRSS() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = s.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return 0 }
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

/// A network that answers at once in virtual time: SYN/ACK with MP_CAPABLE from every target,
/// echo replies to echoes. What is left to measure is the scan's own work.
final class InstantNetwork: PacketNetwork {
    private var clock = 1000.0
    private var pending: [ReceivedPacket] = []
    private var head = 0

    func now() -> Double { clock }

    func send(_ bytes: [UInt8]) throws {
        let p = try IPPacket.parse(bytes)
        guard case .v4(let ip) = p.ip else { return }
        let back = IPv4Header(source: ip.destination, destination: ip.source, protocol: ip.protocol)
        switch p.transport {
        case .tcp(let seg):
            let h = TCPHeader(sourcePort: seg.header.destinationPort, destinationPort: seg.header.sourcePort, sequenceNumber: 1,
                              acknowledgmentNumber: seg.header.sequenceNumber &+ 1, flags: [.syn, .ack], window: 65535,
                              options: [.maximumSegmentSize(1460), .mptcp(.capable(MPCapable(version: 1, flags: 1, senderKey: 7)))])
            pending.append(ReceivedPacket(bytes: try IPPacket(ip: .v4(back), transport: .tcp(TCPSegment(header: h))).serialized(finalize: true),
                                          time: clock + 0.000_01))
        case .icmp(let m):
            let r = ICMPMessage(family: .v4, type: ICMPv4Type.echoReply, code: 0, rest: m.rest, body: m.body)
            pending.append(ReceivedPacket(bytes: try IPPacket(ip: .v4(back), transport: .icmp(r)).serialized(finalize: true), time: clock + 0.000_01))
        default: break
        }
    }

    func receive(until deadline: Double) throws -> ReceivedPacket? {
        if head < pending.count, pending[head].time <= deadline {
            let p = pending[head]
            head += 1
            if head > 4096 { pending.removeFirst(head); head = 0 }
            clock = max(clock, p.time)
            return p
        }
        clock = max(clock, deadline)
        return nil
    }
}

/// `scan-input LINES`: a LINES-line list through the whole pipeline (count pass, feed, dedup,
/// engine, records, SQLite, JSON Lines to /dev/null) on the instant network.
func scanInputBenchmark(lines: Int, withStore: Bool) throws {
    let dir = NSTemporaryDirectory() + "mptracebox-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let list = dir + "/list.txt"
    guard let f = fopen(list, "w") else { throw ScanError.output("cannot write \(list)") }
    for i in 0..<lines {
        // Distinct (address, port) pairs across 198.18.0.0/15; a bad line and a repeat now and then.
        let a = 0xC612_0000 + UInt32(i % 131_072), port = 80 + i / 131_072
        if i % 10_000 == 9_999 { fputs("not a target line\n", f); continue }
        if i % 5_000 == 4_999 { fputs("\(IPv4Address(rawValue: a - 1)):\(port)\n", f); continue }
        fputs("\(IPv4Address(rawValue: a)):\(port) t\(i % 7)\n", f)
    }
    fclose(f)
    let rssBefore = currentRSS()

    var t0 = now()
    let settings = FeedSettings(inputs: [list])
    let count = try ListCount.count(settings)
    let countSeconds = now() - t0
    print("scan_input_lines \(lines)")
    print("scan_count_pass_lines_per_s \(Int(Double(lines) / countSeconds))")

    var template = TraceConfiguration(target: .v4(IPv4Address(rawValue: 0)), source: .v4(IPv4Address(rawValue: 0)),
                                      sourcePort: 1, destinationPort: 80)
    template.maxTTL = 2
    template.retries = 0
    template.rate = 1_000_000
    let network = InstantNetwork()
    let feed = try TargetFeed(settings: settings, indices: count.indices) { _ in [] }
    let store = try withStore ? ScanStore(path: dir + "/scan.db") : nil
    let run = try store?.beginRun(parameters: [:], vantage: [:], now: 0) ?? 0
    let runner = try ScanRunner(settings: ScanRunner.Settings(engine: ScanEngine.Options(rate: 1_000_000, concurrency: 1000)),
                                network: network, checks: [TraceCheck(template: template, seed: 1)], feed: feed,
                                store: store, output: try JSONLinesWriter(path: "/dev/null"), runID: run,
                                sourceAddress: { _ in .v4(IPv4Address(198, 18, 255, 1)) }, log: { _ in })
    var samples: [(Int, Double)] = []
    t0 = now()
    let summary = try runner.run(total: Int(count.indices), shouldStop: { false }, progress: { p in
        if samples.last.map({ p.done - $0.0 >= lines / 10 }) ?? (p.done > 0) { samples.append((p.done, currentRSS())) }
    })
    let seconds = now() - t0
    print("scan_pipeline_targets \(summary.recorded)")
    print("scan_pipeline_targets_per_s \(Int(Double(summary.recorded) / seconds))")
    print("scan_pipeline_cpu_us_per_target \(String(format: "%.1f", cpuSeconds() / Double(max(1, summary.recorded)) * 1e6))")
    print("scan_pipeline_rss_start_mib \(String(format: "%.1f", rssBefore))")
    for (done, rss) in samples { print("scan_pipeline_rss_mib_at_\(done) \(String(format: "%.1f", rss))") }
    print("scan_pipeline_peak_rss_mib \(String(format: "%.1f", peakRSS()))")
}

func cpuSeconds(children: Bool = false) -> Double {
    var u = rusage()
    getrusage(children ? RUSAGE_CHILDREN.rawValue : RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}

/// `scan-live TARGETS RATE…`: the release scanner (next to this binary) in the lab's `scan`
/// scenario: TARGETS distinct AnyIP targets (ports 80, 81 and a closed 82), at each rate.
func scanLiveBenchmark(targets: Int, rates: [Double], shardOfMillion: Bool, checks: String = "trace") throws {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mptracebox").path
    guard FileManager.default.isExecutableFile(atPath: binary) else { throw ScanError.usage("\(binary) is missing: swift build -c release") }
    let spec = try Scenario.named("scan").spec(name: "sb\(getpid() % 100000)")
    let lab = try Lab.up(spec, ephemeral: true)
    defer { try? lab.down() }
    // The lab lifts per-destination ICMP limits; lift the global one too, for 10k probes/s.
    for node in spec.nodes { _ = try? lab.run(node, ["sysctl", "-qw", "net.ipv4.icmp_msgs_per_sec=1000000", "net.ipv4.icmp_msgs_burst=100000"]) }
    let dir = NSTemporaryDirectory() + "mptracebox-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let list = dir + "/live.txt"
    var text = ""
    for i in 0..<targets { text += "\(IPv4Address(rawValue: 0xC612_8000 + UInt32(i % 4096))):\(80 + i / 4096)\n" }
    try text.write(toFile: list, atomically: true, encoding: .utf8)

    func scan(_ args: [String]) throws -> (summary: [String: Any], cpu: Double, rss: Double, wall: Double) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", lab.namespace(.client), "/usr/bin/time", "-f", "maxrss_kb=%M", binary, "scan", "run"] + args
            + ["--output", "/dev/null", "--summary-json", "--quiet"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        let cpu0 = cpuSeconds(children: true)
        let t0 = now()
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let wall = now() - t0
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        let json = lines.last { $0.hasPrefix("{") } ?? ""
        let summary = (try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]) ?? [:]
        if summary.isEmpty { print("# scan failed: \(lines.joined(separator: " | "))") }
        // The scanner's own peak RSS (GNU time), not the bench's other children.
        let rss = lines.last { $0.hasPrefix("maxrss_kb=") }.flatMap { Double($0.dropFirst(10)) }.map { $0 / 1024 } ?? 0
        return (summary, cpuSeconds(children: true) - cpu0, rss, wall)
    }

    for rate in rates {
        // Sessions take three more local ports per target: 800 in flight fit the default port range.
        // The lab's servers echo: sessions end when the echo is back, not at the read timeout.
        let concurrency = checks == "trace" ? 2000 : 800
        let r = try scan([list, "--checks", checks, "--rate", String(Int(rate)), "--concurrency", String(concurrency), "--timeout", "1",
                          "--retries", "0", "--max-ttl", "4"] + (checks == "trace" ? [] : ["--echo"]))
        let recorded = r.summary["recorded"] as? Int ?? 0
        let sendRate = r.summary["send_rate"] as? Double ?? 0
        let tag = (checks == "trace" ? "" : checks.replacingOccurrences(of: ",", with: "_") + "_") + "rate_\(Int(rate))"
        print("scan_live_\(tag)_targets \(recorded)")
        print("scan_live_\(tag)_packets \(r.summary["packets_sent"] as? Int ?? 0)")
        print("scan_live_\(tag)_achieved_packets_per_s \(Int(sendRate))")
        print("scan_live_\(tag)_achieved_fraction \(String(format: "%.3f", sendRate / rate))")
        print("scan_live_\(tag)_targets_per_s \(String(format: "%.0f", Double(recorded) / r.wall))")
        print("scan_live_\(tag)_cpu_us_per_target \(String(format: "%.1f", r.cpu / Double(max(1, recorded)) * 1e6))")
        print("scan_live_\(tag)_cpu_fraction_of_one_core \(String(format: "%.2f", r.cpu / r.wall))")
        print("scan_live_\(tag)_max_reply_lag_ms \(String(format: "%.1f", r.summary["max_reply_lag_ms"] as? Double ?? 0))")
        print("scan_live_\(tag)_peak_rss_mib \(String(format: "%.1f", r.rss))")
    }

    if shardOfMillion {
        // A 1,000,000-line list read in full (count pass, shard bit set, streaming feed) while
        // shard 1/20 of it is probed: the live scanner's memory with a million-line input.
        let big = dir + "/million.txt"
        guard let f = fopen(big, "w") else { throw ScanError.output("cannot write \(big)") }
        for i in 0..<1_000_000 { fputs("\(IPv4Address(rawValue: 0xC612_8000 + UInt32(i % 4096))):\(1000 + i / 4096)\n", f) }
        fclose(f)
        let r = try scan([big, "--checks", checks, "--shard", "1/20", "--seed", "1", "--rate", "10000", "--concurrency", checks == "trace" ? "2000" : "800", "--timeout", "1",
                          "--retries", "0", "--max-ttl", "4"])
        print("scan_live_million_lines_shard_targets \(r.summary["recorded"] as? Int ?? 0)")
        print("scan_live_million_lines_peak_rss_mib \(String(format: "%.1f", r.rss))")
        print("scan_live_million_lines_wall_s \(String(format: "%.1f", r.wall))")
    }
}
