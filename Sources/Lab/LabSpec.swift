// The description of a lab: client → hops → server on one or two paths, and the servers.
// Pure values; `Lab.up` turns a spec into namespaces.

import Foundation

/// Why a lab description was rejected. Messages say what to write instead.
public enum LabSpecError: Error, Equatable, CustomStringConvertible {
    case badBehaviour(String, String)
    case badServer(String, String)
    case badName(String)
    case badSpec(String)
    case unknownScenario(String, known: [String])
    case badFile(String, String)

    public var description: String {
        switch self {
        case .badBehaviour(let text, let why): return "bad hop behaviour '\(text)': \(why)"
        case .badServer(let text, let why): return "bad server '\(text)': \(why)"
        case .badName(let name):
            return "bad lab name '\(name)': use 1-12 characters from a-z, 0-9 and '-', starting with a letter"
        case .badSpec(let why): return "bad lab: \(why)"
        case .unknownScenario(let name, let known):
            return "unknown scenario '\(name)'; known scenarios: \(known.joined(separator: ", "))"
        case .badFile(let path, let why): return "cannot read lab file \(path): \(why)"
        }
    }
}

/// One hop: a Linux router namespace with ip_forward on, plus its behaviours in order.
public struct HopSpec: Sendable, Hashable, CustomStringConvertible {
    public var behaviours: [HopBehaviour]

    public init(_ behaviours: [HopBehaviour] = []) { self.behaviours = behaviours }

    public static let router = HopSpec()

    /// `router`, or behaviours separated by `,` (e.g. `silent,strip:30@syn`).
    public init(parsing text: String) throws {
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard !items.contains(where: \.isEmpty) else {
            throw LabSpecError.badBehaviour(text, "empty behaviour in the list")
        }
        behaviours = try items.filter { $0.lowercased() != "router" }.map { try HopBehaviour(parsing: $0) }
    }

    public var description: String {
        behaviours.isEmpty ? "router" : behaviours.map(\.description).joined(separator: ",")
    }

    /// True when the hop is a middlebox (anything beyond routing and ICMP policy).
    public var isMiddlebox: Bool {
        behaviours.contains { b in
            switch b {
            case .silent, .icmpRateLimit, .rfc792Quotes: return false
            default: return true
            }
        }
    }
}

/// One chain of hops between the client and the server.
public struct PathSpec: Sendable, Hashable {
    public var hops: [HopSpec]
    public init(hops: [HopSpec]) { self.hops = hops }
}

/// What listens in the server namespace.
public enum ServerKind: String, Sendable, Hashable, CaseIterable {
    /// Kernel MPTCP (socket protocol 262) echo server.
    case mptcp
    /// Plain TCP echo server.
    case tcp
    /// No listener: the kernel answers RST.
    case closed
}

/// A server on one port. `mptcp:80,csum,addaddr`, `tcp:8080`, `closed:81`, `tcp:80,anyip`.
public struct ServerSpec: Sendable, Hashable, CustomStringConvertible {
    public var kind: ServerKind
    public var port: UInt16
    /// Echo back what is received (otherwise receive and count only).
    public var echo: Bool
    /// MPTCP DSS checksums (net.mptcp.checksum_enabled=1 in the server namespace).
    public var checksum: Bool
    /// Announce an extra server address with ADD_ADDR (`ip mptcp endpoint ... signal`).
    public var addAddr: Bool
    /// Ignore MPTCP v1 like a v0-only stack: an nft rule in the server namespace (prerouting,
    /// after every capture point of the path) overwrites MP_CAPABLE version 1 in SYNs to this
    /// port with NOPs. The kernel (v1 only) ignores v0 SYNs by itself.
    public var ignoreV1: Bool

    public init(kind: ServerKind, port: UInt16 = 80, echo: Bool = true, checksum: Bool = false, addAddr: Bool = false, ignoreV1: Bool = false) {
        self.kind = kind
        self.port = port
        self.echo = echo
        self.checksum = checksum
        self.addAddr = addAddr
        self.ignoreV1 = ignoreV1
    }

    public init(parsing text: String) throws {
        let items = text.split(separator: ",").map(String.init)
        guard let head = items.first else { throw LabSpecError.badServer(text, "empty") }
        let kp = head.split(separator: ":", maxSplits: 1).map(String.init)
        guard let kind = ServerKind(rawValue: kp[0].lowercased()) else {
            throw LabSpecError.badServer(text, "kind must be one of mptcp, tcp, closed")
        }
        self.init(kind: kind)
        if kp.count == 2 {
            guard let p = UInt16(kp[1]), p > 0 else { throw LabSpecError.badServer(text, "port must be 1-65535") }
            port = p
        }
        for opt in items.dropFirst() {
            switch opt.lowercased() {
            case "csum", "checksum": checksum = true
            case "addaddr": addAddr = true
            case "noecho": echo = false
            case "ignorev1": ignoreV1 = true
            default:
                throw LabSpecError.badServer(text, "unknown option '\(opt)' (csum, addaddr, noecho, ignorev1)")
            }
        }
        if kind != .mptcp && (checksum || addAddr || ignoreV1) {
            throw LabSpecError.badServer(text, "csum, addaddr and ignorev1 need an mptcp server")
        }
    }

    public var description: String {
        var s = "\(kind.rawValue):\(port)"
        if checksum { s += ",csum" }
        if addAddr { s += ",addaddr" }
        if !echo { s += ",noecho" }
        if ignoreV1 { s += ",ignorev1" }
        return s
    }
}

/// A whole lab.
public struct LabSpec: Sendable, Hashable {
    /// Unique among the labs up on this machine; prefixes every namespace.
    public var name: String
    /// Path 0, and optionally path 1 for a dual-homed client.
    public var paths: [PathSpec]
    public var servers: [ServerSpec]
    /// Answer on every address of `Addressing.anyIPv4Prefix`/`anyIPv6Prefix` (scan tests).
    public var anyIP: Bool
    /// Kernel MPTCP on the client (enabled by default; off makes a plain TCP client).
    public var clientMPTCP: Bool

    public init(name: String, paths: [PathSpec], servers: [ServerSpec] = [ServerSpec(kind: .mptcp)],
                anyIP: Bool = false, clientMPTCP: Bool = true) {
        self.name = name
        self.paths = paths
        self.servers = servers
        self.anyIP = anyIP
        self.clientMPTCP = clientMPTCP
    }

    /// Convenience: one path of hops given in the text grammar.
    public init(name: String, hops: [String], servers: [String] = ["mptcp:80"], secondPath: [String]? = nil,
                anyIP: Bool = false) throws {
        var paths = [PathSpec(hops: try hops.map(HopSpec.init(parsing:)))]
        if let secondPath { paths.append(PathSpec(hops: try secondPath.map(HopSpec.init(parsing:)))) }
        self.init(name: name, paths: paths, servers: try servers.map(ServerSpec.init(parsing:)), anyIP: anyIP)
    }

    /// Limits that keep the address plan and interface names valid.
    public static let maxHops = 60
    public static let maxNameLength = 12

    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter, name.count <= maxNameLength else { return false }
        return name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
    }

    public func validate() throws {
        guard Self.isValidName(name) else { throw LabSpecError.badName(name) }
        guard (1...2).contains(paths.count) else { throw LabSpecError.badSpec("a lab has one or two paths") }
        for (i, p) in paths.enumerated() where p.hops.count > Self.maxHops {
            throw LabSpecError.badSpec("path \(i + 1) has \(p.hops.count) hops; at most \(Self.maxHops)")
        }
        let ports = servers.map(\.port)
        guard Set(ports).count == ports.count else {
            throw LabSpecError.badSpec("two servers on the same port; give each its own port (mptcp:80 tcp:81)")
        }
        guard servers.filter(\.addAddr).count <= 1 else {
            throw LabSpecError.badSpec("only one server may use addaddr (the server namespace announces one extra address)")
        }
        let csum = Set(servers.filter { $0.kind == .mptcp }.map(\.checksum))
        guard csum.count <= 1 else {
            throw LabSpecError.badSpec("csum is a namespace-wide setting: give every mptcp server the same csum option")
        }
        for (pi, p) in paths.enumerated() {
            for (hi, h) in p.hops.enumerated() {
                if h.behaviours.contains(.nat) && h.behaviours.contains(.terminatingProxy) {
                    throw LabSpecError.badSpec("\(Node.hop(path: pi, index: hi + 1).name): nat and proxy cannot share a hop")
                }
            }
        }
    }

    /// The nodes of the lab, client first, server last.
    public var nodes: [Node] {
        var n: [Node] = [.client]
        for (pi, p) in paths.enumerated() {
            n += (0..<p.hops.count).map { Node.hop(path: pi, index: $0 + 1) }
        }
        return n + [.server]
    }

    public func hop(_ node: Node) -> HopSpec? {
        guard case .hop(let path, let index) = node, path < paths.count, index >= 1,
              index <= paths[path].hops.count else { return nil }
        return paths[path].hops[index - 1]
    }

    /// The compact command-line form of this spec.
    public var commandLine: [String] {
        var a: [String] = []
        for h in paths[0].hops { a += ["--hop", h.description] }
        if paths.count > 1 { for h in paths[1].hops { a += ["--hop2", h.description] } }
        for s in servers { a += ["--server", s.description] }
        if anyIP { a.append("--anyip") }
        return a
    }
}

/// A namespace of a lab.
public enum Node: Sendable, Hashable, CustomStringConvertible {
    case client
    case server
    /// Hop `index` (1-based) on path `path` (0 or 1).
    case hop(path: Int, index: Int)

    /// `client`, `server`, `hop3` (path 1), `alt2` (path 2).
    public var name: String {
        switch self {
        case .client: return "client"
        case .server: return "server"
        case .hop(let p, let i): return (p == 0 ? "hop" : "alt") + "\(i)"
        }
    }

    public var description: String { name }

    public init?(name: String) {
        switch name {
        case "client": self = .client
        case "server": self = .server
        default:
            for (prefix, p) in [("hop", 0), ("alt", 1)] where name.hasPrefix(prefix) {
                if let i = Int(name.dropFirst(prefix.count)), i >= 1 { self = .hop(path: p, index: i); return }
            }
            return nil
        }
    }
}
