// Where lab specs come from: the command-line form, YAML files, and the named scenarios.

import Foundation
import Yams

extension LabSpec {
    /// Parses the command-line form produced by `commandLine`:
    /// `--hop H … [--hop2 H …] [--server S …] [--anyip] [--no-client-mptcp]`.
    public init(commandLine args: [String], name: String) throws {
        var hops: [String] = [], hops2: [String] = [], servers: [String] = []
        var anyIP = false, clientMPTCP = true
        var i = 0
        while i < args.count {
            let a = args[i]
            switch a {
            case "--anyip": anyIP = true; i += 1; continue
            case "--no-client-mptcp": clientMPTCP = false; i += 1; continue
            case "--hop", "--hop2", "--server":
                guard i + 1 < args.count else { throw LabSpecError.badSpec("\(a) needs a value") }
                let v = args[i + 1]
                if a == "--hop" { hops.append(v) } else if a == "--hop2" { hops2.append(v) } else { servers.append(v) }
                i += 2
            default:
                throw LabSpecError.badSpec("unexpected '\(a)' (use --hop, --hop2, --server, --anyip)")
            }
        }
        try self.init(name: name, hops: hops, servers: servers.isEmpty ? ["mptcp:80"] : servers,
                      secondPath: hops2.isEmpty ? nil : hops2, anyIP: anyIP)
        self.clientMPTCP = clientMPTCP
    }

    // MARK: YAML

    /// The YAML form:
    ///
    ///     name: mylab            # optional; the command line may override it
    ///     path:  [router, "strip:30@syn", router]
    ///     path2: [router, "drop:30/1@syn"]   # optional second path (dual-homed client)
    ///     servers: ["mptcp:80,addaddr", "tcp:81"]
    ///     anyip: false
    ///     client_mptcp: true
    ///
    /// A hop is a string in the hop grammar or a list of behaviours.
    public init(yaml text: String, source: String = "<yaml>", name: String? = nil) throws {
        let file: LabFile
        do {
            file = try YAMLDecoder().decode(LabFile.self, from: text)
        } catch let e as LabSpecError {
            throw e
        } catch {
            throw LabSpecError.badFile(source, Self.describe(error))
        }
        guard let labName = name ?? file.name else {
            throw LabSpecError.badFile(source, "no name: add `name: …` or pass --name")
        }
        guard let path = file.path else {
            throw LabSpecError.badFile(source, "no `path:` (a list of hops, e.g. [router, \"strip:30@syn\"])")
        }
        var paths = [PathSpec(hops: try path.map { try $0.hop() })]
        if let p2 = file.path2 { paths.append(PathSpec(hops: try p2.map { try $0.hop() })) }
        self.init(name: labName, paths: paths,
                  servers: try (file.servers ?? ["mptcp:80"]).map(ServerSpec.init(parsing:)),
                  anyIP: file.anyip ?? false, clientMPTCP: file.client_mptcp ?? true)
    }

    public init(yamlFile path: String, name: String? = nil) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LabSpecError.badFile(path, "no such file or not readable")
        }
        try self.init(yaml: String(decoding: data, as: UTF8.self), source: path, name: name)
    }

    private static func describe(_ error: Error) -> String {
        if let e = error as? DecodingError {
            switch e {
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
                if let inner = c.underlyingError as? LabSpecError { return inner.description }
                let at = c.codingPath.map(\.stringValue).joined(separator: ".")
                return (at.isEmpty ? "" : "at \(at): ") + c.debugDescription
            @unknown default: return "\(e)"
            }
        }
        return "\(error)"
    }
}

/// The decoded shape of a YAML lab file.
private struct LabFile: Decodable {
    var name: String?
    var path: [HopEntry]?
    var path2: [HopEntry]?
    var servers: [String]?
    var anyip: Bool?
    var client_mptcp: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, path, path2, servers, anyip, client_mptcp }

    init(from decoder: Decoder) throws {
        // Reject unknown keys: a misspelt key must not silently give a different lab.
        let any = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let bad = any.allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw LabSpecError.badSpec("unknown key '\(bad.stringValue)' in lab file (known: \(known.sorted().joined(separator: ", ")))")
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        path = try c.decodeIfPresent([HopEntry].self, forKey: .path)
        path2 = try c.decodeIfPresent([HopEntry].self, forKey: .path2)
        servers = try c.decodeIfPresent([String].self, forKey: .servers)
        anyip = try c.decodeIfPresent(Bool.self, forKey: .anyip)
        client_mptcp = try c.decodeIfPresent(Bool.self, forKey: .client_mptcp)
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A hop in YAML: `"silent,strip:30@syn"` or `[silent, "strip:30@syn"]`.
private enum HopEntry: Decodable {
    case text(String)
    case list([String])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s) } else { self = .list(try c.decode([String].self)) }
    }

    func hop() throws -> HopSpec {
        switch self {
        case .text(let s): return try HopSpec(parsing: s)
        case .list(let l): return try HopSpec(parsing: l.isEmpty ? "router" : l.joined(separator: ","))
        }
    }
}

// MARK: - Scenarios

/// Labs that ship with the tool (`mptracebox lab up --scenario NAME`).
public struct Scenario: Sendable {
    public var name: String
    public var summary: String
    public var args: [String]

    public func spec(name labName: String) throws -> LabSpec { try LabSpec(commandLine: args, name: labName) }

    public static let all: [Scenario] = [
        Scenario(name: "demo", summary: "3 routers and a middlebox that strips MP_CAPABLE from SYNs in front of a kernel MPTCP server",
                 args: ["--hop", "router", "--hop", "router", "--hop", "strip:30@syn", "--hop", "router", "--server", "mptcp:80"]),
        Scenario(name: "clean", summary: "3 plain routers in front of a kernel MPTCP server",
                 args: ["--hop", "router", "--hop", "router", "--hop", "router", "--server", "mptcp:80"]),
        Scenario(name: "synack-strip", summary: "MP_CAPABLE stripped from SYN/ACKs on the way back",
                 args: ["--hop", "router", "--hop", "strip:30@synack", "--hop", "router", "--server", "mptcp:80"]),
        Scenario(name: "dss-strip", summary: "MPTCP options stripped from every non-SYN segment (fallback after the handshake)",
                 args: ["--hop", "router", "--hop", "strip:30@nonsyn", "--hop", "router", "--server", "mptcp:80"]),
        Scenario(name: "nat", summary: "a port-randomising NAT and an MSS clamp",
                 args: ["--hop", "router", "--hop", "nat", "--hop", "mss:clamp:1200", "--hop", "router", "--server", "mptcp:80"]),
        Scenario(name: "synproxy", summary: "the kernel's SYNPROXY in front of the server",
                 args: ["--hop", "router", "--hop", "synproxy", "--hop", "router", "--server", "mptcp:80"]),
        Scenario(name: "proxy", summary: "a transparent terminating TCP proxy",
                 args: ["--hop", "router", "--hop", "proxy", "--hop", "router", "--server", "mptcp:80"]),
        Scenario(name: "dualpath", summary: "dual-homed client; the second path strips MPTCP options from SYNs (MP_JOIN fails)",
                 args: ["--hop", "router", "--hop", "router", "--hop2", "router", "--hop2", "strip:30@syn",
                        "--server", "mptcp:80,addaddr"]),
        Scenario(name: "sixhop", summary: "6 hops, two middleboxes (the `lab up` timing figure)",
                 args: ["--hop", "router", "--hop", "strip:30@syn", "--hop", "router", "--hop", "mss:1300",
                        "--hop", "router", "--hop", "router", "--server", "mptcp:80", "--server", "tcp:81"]),
        Scenario(name: "scan", summary: "AnyIP server answering on \(Addressing.anyIPv4Prefix) and \(Addressing.anyIPv6Prefix)",
                 args: ["--hop", "router", "--hop", "router", "--server", "mptcp:80", "--server", "tcp:81", "--anyip"]),
    ]

    public static func named(_ name: String) throws -> Scenario {
        guard let s = all.first(where: { $0.name == name }) else {
            throw LabSpecError.unknownScenario(name, known: all.map(\.name))
        }
        return s
    }
}
