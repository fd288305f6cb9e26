import Foundation
import XCTest
import TestSupport
import Lab

/// A lab owned by one test, and `mptracebox connect` run in its client namespace.
/// The server's kernel counters (`nstat`) and the lab server's connection log are the oracles.
final class SessionLab {
    let lab: Lab
    let binary: String

    init(_ test: XCTestCase, hops: [String], servers: [String] = ["mptcp:80"], secondPath: [String]? = nil) throws {
        try TestEnvironment.requireRoot()
        for t in ["nft", "ethtool", "python3", "nstat"] { try TestEnvironment.requireTool(t) }
        binary = try LabBinary.path()
        let spec = try LabSpec(name: SessionLab.uniqueName(), hops: hops, servers: servers, secondPath: secondPath)
        lab = try Lab.up(spec, ephemeral: true)
        test.addTeardownBlock { [lab] in try? lab.down() }
    }

    static func uniqueName() -> String {
        let chars = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return "s" + String((0..<7).map { _ in chars.randomElement()! })
    }

    var server: String { lab.serverIPv4 }

    func counters() throws -> [String: UInt64] { try lab.mptcpCounters(.server) }

    /// Runs `connect --json` in the client namespace; returns the document and the counter deltas.
    func connect(_ args: [String] = [], target: String? = nil) throws -> (doc: [String: Any], delta: [String: Int64], raw: String) {
        let before = try counters()
        let r = try lab.run(.client, [binary, "connect", "--json", "--timeout", "0.5"] + args + [target ?? server])
        guard r.status == 0, let doc = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] else {
            throw SessionLabError("connect failed (status \(r.status)): \(r.stderr) \(r.stdout.prefix(500))")
        }
        // The server logs the connection when it closes; give it a moment.
        usleep(200_000)
        let after = try counters()
        var delta: [String: Int64] = [:]
        for (k, v) in after { delta[k.replacingOccurrences(of: "MPTcpExt", with: "")] = Int64(v) - Int64(before[k] ?? 0) }
        return (doc, delta, r.stdout)
    }

    /// Starts a command in a node's namespace without waiting; output goes to a file (never a
    /// pipe, so a long-lived child cannot hold the caller's pipes open). Returns its pid.
    func start(_ node: Node, _ argv: [String]) throws -> Process {
        let log = "\(lab.stateDirectory)/bg-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") { p.executableURL = URL(fileURLWithPath: "/sbin/ip") }
        p.arguments = ["netns", "exec", lab.namespace(node)] + argv
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// tcpdump on the server's path-0 interface (before its netfilter hooks) while `traffic` runs;
    /// the segments the server received, dissected by tshark (an oracle independent of our parser).
    func serverCapture(_ traffic: () throws -> Void) throws -> [ServerSeen] {
        let file = "\(lab.stateDirectory)/srv-\(UUID().uuidString.prefix(8)).pcap"
        let log = file + ".log"
        let pid = try lab.spawn(.server, ["tcpdump", "-i", "p0", "--immediate-mode", "-U", "-n", "-s", "0", "-w", file, "tcp"], log: log)
        let deadline = Date().addingTimeInterval(5)
        while !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("listening on") {
            guard Date() < deadline else { throw SessionLabError("tcpdump did not start in the server namespace") }
            usleep(5_000)
        }
        try traffic()
        usleep(100_000)
        // tcpdump is our child: reap it (it flushes the file on SIGINT).
        kill(pid, SIGINT)
        for _ in 0..<500 where waitpid(pid, nil, WNOHANG) == 0 { usleep(10_000) }
        let fields = ["ip.src", "tcp.srcport", "tcp.flags.syn", "tcp.flags.ack", "tcp.len", "tcp.options.mptcp.subtype",
                      "tcp.options.mptcp.version", "tcp.options.nop", "tcp.flags.reset", "tcp.options.mptcp.rst_reason",
                      "tcp.options.mptcp.sendtrunchmac"]
        let out = try TestShell.check(["tshark", "-r", file, "-n", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
                                       "-E", "aggregator=,"] + fields.flatMap { ["-e", $0] })
        return out.split(separator: "\n").map { line in
            let c = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) + Array(repeating: "", count: fields.count)
            let ints = { (s: String) in s.split(separator: ",").compactMap { Int($0) } }
            return ServerSeen(fromClient: c[0] != server, sourcePort: Int(c[1]) ?? 0, syn: c[2] == "1" || c[2] == "True",
                              ack: c[3] == "1" || c[3] == "True", payload: Int(c[4]) ?? 0, subtypes: ints(c[5]),
                              versions: ints(c[6]), nops: c[7].split(separator: ",").count, rst: c[8] == "1" || c[8] == "True",
                              rstReasons: c[9].split(separator: ",").compactMap { Int($0.hasPrefix("0x") ? String($0.dropFirst(2)) : String($0), radix: $0.hasPrefix("0x") ? 16 : 10) },
                              truncatedHMACs: c[10].split(separator: ",").compactMap { UInt64($0) })
        }
    }

    /// The server's closed-connection records.
    func serverClosed(port: UInt16 = 80) -> [[String: Any]] {
        lab.serverConnections(port: port).filter { $0["event"] as? String == "close" }
    }
}

/// One TCP segment on the server's interface, as tshark dissected it.
struct ServerSeen {
    var fromClient: Bool
    var sourcePort: Int
    var syn: Bool
    var ack: Bool
    var payload: Int
    /// MPTCP option subtypes (0 MP_CAPABLE, 2 DSS, 3 ADD_ADDR) and MP_CAPABLE versions.
    var subtypes: [Int]
    var versions: [Int]
    var nops: Int
    var rst: Bool = false
    /// MP_TCPRST reason codes and MP_JOIN SYN/ACK truncated HMACs, as tshark read them.
    var rstReasons: [Int] = []
    var truncatedHMACs: [UInt64] = []
}

extension Dictionary where Key == String, Value == Any {
    var verdict: String? { self["verdict"] as? String }
    var subflowVerdicts: [String] { (self["subflows"] as? [[String: Any]] ?? []).compactMap { $0["verdict"] as? String } }
    var addAddrVerdict: String? { (self["add_addr"] as? [String: Any])?["verdict"] as? String }
    var detail: [String: String] { self["detail"] as? [String: String] ?? [:] }
    var counters: [String: Int] { self["counters"] as? [String: Int] ?? [:] }
}

struct SessionLabError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
