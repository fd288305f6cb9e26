// The address plan of a lab. Every lab uses the same plan (its namespaces are isolated), so
// addresses are predictable: path p, link L (0 = client side) is 198.(18+p).L.0/24 and
// 2001:db8:p:L::/64; the end nearer the client is .1 / ::1, the far end .2 / ::2.

/// One end of a lab link.
public struct LinkEnd: Sendable, Hashable, Codable {
    /// The interface name inside the node's namespace.
    public var interface: String
    public var ipv4: String
    public var ipv6: String
    /// Prefix lengths: /24 and /64.
    public var ipv4Prefix: Int { 24 }
    public var ipv6Prefix: Int { 64 }
}

/// One veth link between two nodes.
public struct Link: Sendable, Hashable {
    public var path: Int
    /// 0 = the link at the client, `hops.count` = the link at the server.
    public var index: Int
    public var left: Node
    public var right: Node
    public var leftEnd: LinkEnd
    public var rightEnd: LinkEnd
}

public enum Addressing {
    /// Extra server address announced with ADD_ADDR on a one-path lab (on a dummy interface).
    public static let extraServerIPv4 = "198.18.250.1"
    public static let extraServerIPv6 = "2001:db8:fa::1"
    /// AnyIP prefixes: the server answers on every address in them.
    public static let anyIPv4Prefix = "198.18.128.0/20"
    public static let anyIPv6Prefix = "2001:db8:a::/64"
    /// Aggregates of each path, for routes.
    public static func ipv4Aggregate(path: Int) -> String { "198.\(18 + path).0.0/16" }
    public static func ipv6Aggregate(path: Int) -> String { "2001:db8:\(path)::/48" }

    public static func ipv4(path: Int, link: Int, end: Int) -> String { "198.\(18 + path).\(link).\(end)" }
    /// Canonical text (RFC 5952) of 2001:db8:PATH:LINK::END; end 0 is the network address.
    public static func ipv6(path: Int, link: Int, end: Int) -> String {
        let groups = [0x2001, 0xdb8, path, link, 0, 0, 0, end]
        // Longest run of zero groups (length ≥ 2) becomes "::".
        var best = (start: -1, len: 0), i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > best.len && j - i >= 2 { best = (i, j - i) }
                i = j
            } else { i += 1 }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard best.start >= 0 else { return hex.joined(separator: ":") }
        return hex[..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.len)...].joined(separator: ":")
    }

    /// Interface names: `p0`/`p1` at the client and server, `left`/`right` in a hop.
    static func interface(of node: Node, path: Int, towardsServer: Bool) -> String {
        switch node {
        case .client, .server: return "p\(path)"
        case .hop: return towardsServer ? "right" : "left"
        }
    }

    /// Every link of the lab, path by path, client side first.
    public static func links(of spec: LabSpec) -> [Link] {
        var out: [Link] = []
        for (p, path) in spec.paths.enumerated() {
            let chain: [Node] = [.client] + (0..<path.hops.count).map { Node.hop(path: p, index: $0 + 1) } + [.server]
            for l in 0..<(chain.count - 1) {
                let a = chain[l], b = chain[l + 1]
                out.append(Link(
                    path: p, index: l, left: a, right: b,
                    leftEnd: LinkEnd(interface: interface(of: a, path: p, towardsServer: true),
                                     ipv4: ipv4(path: p, link: l, end: 1), ipv6: ipv6(path: p, link: l, end: 1)),
                    rightEnd: LinkEnd(interface: interface(of: b, path: p, towardsServer: false),
                                      ipv4: ipv4(path: p, link: l, end: 2), ipv6: ipv6(path: p, link: l, end: 2))))
            }
        }
        return out
    }

    /// The interfaces of one node with their addresses.
    public static func ends(of node: Node, in spec: LabSpec) -> [LinkEnd] {
        links(of: spec).flatMap { l -> [LinkEnd] in
            (l.left == node ? [l.leftEnd] : []) + (l.right == node ? [l.rightEnd] : [])
        }
    }

    /// The server's address on path 0 (what the client connects to).
    public static func serverIPv4(_ spec: LabSpec, path: Int = 0) -> String {
        ipv4(path: path, link: spec.paths[path].hops.count, end: 2)
    }
    public static func serverIPv6(_ spec: LabSpec, path: Int = 0) -> String {
        ipv6(path: path, link: spec.paths[path].hops.count, end: 2)
    }
    public static func clientIPv4(path: Int = 0) -> String { ipv4(path: path, link: 0, end: 1) }
    public static func clientIPv6(path: Int = 0) -> String { ipv6(path: path, link: 0, end: 1) }
}
