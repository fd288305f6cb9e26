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
        FileManager.default.createFile(atPath: log, contents: nil)
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

    /// The server's closed-connection records.
    func serverClosed(port: UInt16 = 80) -> [[String: Any]] {
        lab.serverConnections(port: port).filter { $0["event"] as? String == "close" }
    }
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
