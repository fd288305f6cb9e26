import Foundation
import XCTest
import TestSupport
@testable import Lab

/// Brings up a lab owned by the test (taken down at the end of the test, or by the next
/// `up` on this machine if the test process dies).
func makeLab(_ test: XCTestCase, hops: [String], servers: [String] = ["mptcp:80"], secondPath: [String]? = nil,
             anyIP: Bool = false) throws -> Lab {
    try TestEnvironment.requireRoot()
    for t in ["tcpdump", "tshark", "nft", "ethtool", "python3", "nstat"] { try TestEnvironment.requireTool(t) }
    let spec = try LabSpec(name: uniqueLabName(), hops: hops, servers: servers, secondPath: secondPath, anyIP: anyIP)
    let lab = try Lab.up(spec, ephemeral: true)
    test.addTeardownBlock { try? lab.down() }
    return lab
}

func uniqueLabName() -> String {
    let chars = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    return "t" + String((0..<7).map { _ in chars.randomElement()! })
}

/// A kernel client in the client namespace (python3; protocol 262 for MPTCP).
enum KernelClient {
    static let script = #"""
import socket, sys, time
proto, host, port, nbytes, chunk, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM, 262 if proto == "mptcp" else 0)
if ttl > 0:
    # A TTL-limited connection attempt: the SYN expires on the path.
    if family == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    else:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    s.setblocking(False)
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    time.sleep(0.3)
    sys.exit(0)
s.settimeout(10)
s.connect((host, port))
sent = 0
got = 0
while sent < nbytes:
    n = min(chunk, nbytes - sent)
    s.sendall(b"m" * n)
    sent += n
    time.sleep(0.01)
s.shutdown(socket.SHUT_WR)
while True:
    d = s.recv(65536)
    if not d:
        break
    got += len(d)
print(got)
"""#

    /// Connects, sends `bytes`, reads the echo; returns the bytes echoed back.
    @discardableResult
    static func exchange(_ lab: Lab, host: String? = nil, port: UInt16 = 80, proto: String = "mptcp",
                         bytes: Int = 3000, chunk: Int = 1000) throws -> Int {
        let out = try lab.check(.client, ["python3", "-c", script, proto, host ?? lab.serverIPv4, "\(port)",
                                          "\(bytes)", "\(chunk)", "0"])
        return Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// A crafted IPv4 SYN (raw socket) with the given TCP options, e.g. an MPTCP SYN whose TTL
    /// expires on the path (IP_TTL is not supported on MPTCP sockets).
    static let rawSYN = #"""
import socket, struct, sys
src, dst, port, ttl, opts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), bytes.fromhex(sys.argv[5])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
tcp = struct.pack("!HHIIBBHHH", 40000, port, 1000, 0, (5 + len(opts) // 4) << 4, 0x02, 64240, 0, 0) + opts
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, ttl, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + tcp, (dst, 0))
"""#

    /// MSS 1460, SACK-permitted, NOP, NOP, MP_CAPABLE v1 (kind 30, length 4, flags 0x81).
    static let mptcpSYNOptions = "020405b404020101" + "1e040181"

    static func craftedSYN(_ lab: Lab, ttl: Int, options: String = mptcpSYNOptions, port: UInt16 = 80) throws {
        try lab.check(.client, ["python3", "-c", rawSYN, lab.clientIPv4, lab.serverIPv4, "\(port)", "\(ttl)", options])
    }

    /// Sends one SYN with a limited TTL (it expires at hop `ttl`).
    static func expiringSYN(_ lab: Lab, ttl: Int, host: String? = nil, port: UInt16 = 80, proto: String = "mptcp") throws {
        try lab.check(.client, ["python3", "-c", script, proto, host ?? lab.serverIPv4, "\(port)", "0", "1", "\(ttl)"])
    }
}

/// One packet as dissected by tshark (the independent oracle).
struct Packet: Equatable, CustomStringConvertible {
    static let fields = [
        "ip.src", "ip.dst", "ip.ttl", "ip.dsfield", "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.tclass",
        "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value",
        "tcp.options", "tcp.len", "tcp.payload", "tcp.checksum.status", "icmp.type", "icmpv6.type",
    ]
    var f: [String: String]

    subscript(_ k: String) -> String {
        get { f[k] ?? "" }
        set { f[k] = newValue }
    }

    var isTCP: Bool { !self["tcp.flags"].isEmpty && self["icmp.type"].isEmpty && self["icmpv6.type"].isEmpty }
    var flags: Int { Int(self["tcp.flags"].replacingOccurrences(of: "0x", with: ""), radix: 16) ?? 0 }
    var isSYN: Bool { flags & 0x02 != 0 && flags & 0x10 == 0 }
    var isSYNACK: Bool { flags & 0x12 == 0x12 }
    var hasPayload: Bool { (Int(self["tcp.len"]) ?? 0) > 0 }
    var src: String { self["ip.src"].isEmpty ? self["ipv6.src"] : self["ip.src"] }
    var options: String { self["tcp.options"] }

    var description: String {
        Self.fields.compactMap { k in f[k].flatMap { $0.isEmpty ? nil : "\(k)=\($0)" } }.joined(separator: " ")
    }

    /// The options with every option of `kind` overwritten by NOPs (what a stripping box does).
    static func stripping(_ kind: UInt8, from hex: String) -> String {
        rewritingOptions(hex) { bytes, i, len in
            if bytes[i] == kind { for j in i..<min(i + len, bytes.count) { bytes[j] = 1 } }
        }
    }

    /// The options with the value bytes of every MPTCP option of `subtype` inverted (what
    /// `corrupt:30/SUB` does): all after the 4-byte header (after 3 bytes in 4-byte options).
    static func corrupting(mptcpSubtype subtype: UInt8, from hex: String) -> String {
        rewritingOptions(hex) { bytes, i, len in
            guard bytes[i] == 30, i + 2 < bytes.count, bytes[i + 2] >> 4 == subtype else { return }
            for j in (i + (len > 4 ? 4 : 3))..<min(i + len, bytes.count) { bytes[j] ^= 0xff }
        }
    }

    /// Walks the options (hex) and lets `rewrite` change each one in place (offset, length).
    private static func rewritingOptions(_ hex: String, _ rewrite: (inout [UInt8], Int, Int) -> Void) -> String {
        var bytes = stride(from: 0, to: hex.count, by: 2).compactMap { i -> UInt8? in
            let s = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[s..<hex.index(s, offsetBy: 2)], radix: 16)
        }
        var i = 0
        while i < bytes.count {
            let k = bytes[i]
            if k == 0 { break }
            if k == 1 { i += 1; continue }
            guard i + 1 < bytes.count, bytes[i + 1] >= 2 else { break }
            let len = Int(bytes[i + 1])
            rewrite(&bytes, i, len)
            i += len
        }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// Option kinds present, in order.
    static func kinds(_ hex: String) -> [UInt8] {
        let bytes = stride(from: 0, to: hex.count, by: 2).compactMap { i -> UInt8? in
            let s = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[s..<hex.index(s, offsetBy: 2)], radix: 16)
        }
        var out: [UInt8] = [], i = 0
        while i < bytes.count {
            let k = bytes[i]
            out.append(k)
            if k == 0 { break }
            if k == 1 { i += 1; continue }
            guard i + 1 < bytes.count, bytes[i + 1] >= 2 else { break }
            i += Int(bytes[i + 1])
        }
        return out
    }
}

/// tcpdump on one interface of a node, read back with tshark.
final class Capture {
    let lab: Lab
    let file: String
    let pid: Int32

    init(_ lab: Lab, _ node: Node, _ interface: String, filter: String = "tcp or icmp or icmp6") throws {
        self.lab = lab
        file = "\(lab.stateDirectory)/cap-\(node.name)-\(interface)-\(UUID().uuidString.prefix(8)).pcap"
        let log = file + ".log"
        pid = try lab.spawn(node, ["tcpdump", "-i", interface, "--immediate-mode", "-U", "-n", "-s", "0", "-w", file, filter], log: log)
        let deadline = Date().addingTimeInterval(5)
        while !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("listening on") {
            guard Date() < deadline else { throw LabError.daemonFailed(node: node.name, what: "tcpdump", log: "") }
            usleep(5_000)
        }
    }

    /// Stops the capture and dissects it.
    func packets() throws -> [Packet] {
        kill(pid, SIGINT)
        let deadline = Date().addingTimeInterval(5)
        while ProcessInfoProbe.isRunning(pid) && Date() < deadline { usleep(5_000) }
        let out = try TestShell.check(["tshark", "-r", file, "-n", "-o", "tcp.check_checksum:TRUE",
                                       "-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields",
                                       "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
                                      + Packet.fields.flatMap { ["-e", $0] })
        return out.split(separator: "\n", omittingEmptySubsequences: true).map { line in
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            var f: [String: String] = [:]
            for (k, v) in zip(Packet.fields, cols) {
                // Addresses keep their colons; byte fields lose them.
                f[k] = k.hasSuffix("src") || k.hasSuffix("dst") ? v : v.replacingOccurrences(of: ":", with: "")
            }
            return Packet(f: f)
        }
    }
}

/// Captures both sides of a hop while `traffic` runs.
func captureAcross(_ lab: Lab, _ hop: Node, filter: String = "tcp or icmp or icmp6",
                   _ traffic: () throws -> Void) throws -> (left: [Packet], right: [Packet]) {
    let l = try Capture(lab, hop, "left", filter: filter)
    let r = try Capture(lab, hop, "right", filter: filter)
    try traffic()
    usleep(100_000)
    return (try l.packets(), try r.packets())
}

/// Asserts that `after` is exactly `before` with `expected` applied (field by field).
func assertTransformed(_ before: [Packet], _ after: [Packet], _ what: String,
                       file: StaticString = #filePath, line: UInt = #line, _ expected: (inout Packet) -> Void) {
    XCTAssertEqual(before.count, after.count, "\(what): packet count differs across the box", file: file, line: line)
    XCTAssertFalse(before.isEmpty, "\(what): no packets captured", file: file, line: line)
    // Two packets crossing the hop at once may be forwarded in either order (one per CPU): a
    // permutation of the expected packets is what the box did too.
    let expectedAll = before.map { b -> Packet in var e = b; expected(&e); return e }
    if expectedAll.count == after.count {
        var unmatched = after
        for e in expectedAll {
            if let k = unmatched.firstIndex(where: { $0 == e }) { unmatched.remove(at: k) }
        }
        if unmatched.isEmpty { return }
    }
    for (i, (b, a)) in zip(before, after).enumerated() {
        var e = b
        expected(&e)
        if e != a {
            let diff = Packet.fields.filter { e[$0] != a[$0] }.map { "\($0): expected \(e[$0]) got \(a[$0])" }
            XCTFail("\(what): packet \(i) differs: \(diff.joined(separator: "; "))\n  before: \(b)\n  after:  \(a)",
                    file: file, line: line)
        }
    }
}

/// The router's own change: TTL/hop limit minus one.
func routed(_ p: inout Packet) {
    if let t = Int(p["ip.ttl"]) { p["ip.ttl"] = "\(t - 1)" }
    if let h = Int(p["ipv6.hlim"]) { p["ipv6.hlim"] = "\(h - 1)" }
}
