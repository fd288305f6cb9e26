import Foundation
import XCTest
import TestSupport

/// A throw-away set of network namespaces for one test. Names carry a per-run prefix with the
/// process id ("mtbt-<pid>-<random>-…"), so parallel runs never collide and namespaces left by a
/// killed run are found (dead pid) and removed by the next run.
final class NetnsLab {
    static let stem = "mtbt-"
    let prefix: String
    private(set) var namespaces: [String] = []

    init() throws {
        try TestEnvironment.requireRoot()
        try TestEnvironment.requireTool("ip")
        NetnsLab.removeStale()
        prefix = "\(NetnsLab.stem)\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    }

    deinit { destroy() }

    /// Creates a namespace with loopback up; returns its full name.
    @discardableResult
    func add(_ short: String) throws -> String {
        let name = "\(prefix)-\(short)"
        try TestShell.check(["ip", "netns", "add", name])
        namespaces.append(name)
        try run(name, ["ip", "link", "set", "lo", "up"])
        // No duplicate address detection: link-local addresses are usable at once, so the first
        // packets of a test do not wait ~2 s for neighbour discovery.
        try sysctl(name, "net.ipv6.conf.all.accept_dad", "0")
        try sysctl(name, "net.ipv6.conf.default.accept_dad", "0")
        return name
    }

    /// A veth pair between two namespaces, created inside them (no name ever exists in the host).
    func link(_ a: String, _ ifA: String, _ b: String, _ ifB: String) throws {
        try TestShell.check(["ip", "-n", a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b])
        try run(a, ["ip", "link", "set", ifA, "up"])
        try run(b, ["ip", "link", "set", ifB, "up"])
    }

    func address(_ ns: String, _ interface: String, _ cidr: String) throws {
        var argv = ["ip", "addr", "add", cidr, "dev", interface]
        if cidr.contains(":") { argv.append("nodad") }
        try run(ns, argv)
    }

    func sysctl(_ ns: String, _ key: String, _ value: String) throws {
        try run(ns, ["sysctl", "-q", "-w", "\(key)=\(value)"])
    }

    @discardableResult
    func run(_ ns: String, _ argv: [String]) throws -> String {
        try TestShell.check(["ip", "netns", "exec", ns] + argv)
    }

    func destroy() {
        for name in namespaces.reversed() { _ = try? TestShell.run(["ip", "netns", "del", name]) }
        namespaces = []
    }

    /// Removes namespaces of earlier runs whose process is gone (SIGKILL leaves them behind).
    static func removeStale() {
        guard let list = try? TestShell.check(["ip", "netns", "list"]) else { return }
        for line in list.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(stem) else { continue }
            let pidText = name.dropFirst(stem.count).prefix { $0.isNumber }
            guard let pid = Int32(pidText), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            _ = try? TestShell.run(["ip", "netns", "del", name])
        }
    }

    /// Runs `body` on this thread inside namespace `ns` (TestSupport's NetworkNamespace.inside).
    func inside<T>(_ ns: String, _ body: () throws -> T) throws -> T {
        try NetworkNamespace.inside(ns, body)
    }
}

struct LabError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

