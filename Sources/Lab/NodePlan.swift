// Renders what each namespace needs (ip batch, sysctls, nftables and iptables rule sets,
// element queues) from the spec. Pure: the runner executes the plan, tests can read it.

/// An element process a hop needs: one NFQUEUE queue per element behaviour.
public struct ElementPlan: Sendable, Hashable {
    public var queue: UInt16
    public var behaviour: HopBehaviour
}

/// Everything one namespace needs, rendered as command inputs.
public struct NodePlan: Sendable {
    public var node: Node
    /// Lines for `ip -batch -` inside the namespace (addresses, links, routes, mptcp).
    public var ipBatch: [String] = []
    /// Lines for `ip -6 -batch -` (rules do not infer the family from the address).
    public var ip6Batch: [String] = []
    /// Sysctls set before addresses are configured.
    public var sysctls: [(String, String)] = []
    /// Sysctls that exist only once conntrack is in use (set after the rule sets).
    public var lateSysctls: [(String, String)] = []
    /// Interfaces whose offloads are turned off.
    public var interfaces: [String] = []
    /// `nft -f` input, empty when the node has no nftables behaviour.
    public var nftables: String = ""
    /// `iptables-restore` / `ip6tables-restore` input for NFQUEUE rules, empty when none.
    public var iptables: String = ""
    public var ip6tables: String = ""
    public var elements: [ElementPlan] = []
    /// A transparent proxy listens on this port in the hop.
    public var proxyPort: UInt16?
}

public enum NodePlanner {
    /// Port of the terminating proxy inside a hop.
    public static let proxyPort: UInt16 = 3129
    /// First NFQUEUE queue number of a hop's elements.
    public static let firstQueue: UInt16 = 100
    /// Mark bit set on data segments (non-SYN with payload) by the classifier chain.
    public static let dataMark = "0x00000001"

    public static func plans(for spec: LabSpec) -> [NodePlan] {
        spec.nodes.map { plan(for: $0, in: spec) }
    }

    public static func plan(for node: Node, in spec: LabSpec) -> NodePlan {
        var p = NodePlan(node: node)
        let links = Addressing.links(of: spec)
        p.sysctls = [
            ("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.all.accept_dad", "0"), ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.all.accept_ra", "0"), ("net.ipv6.conf.default.accept_ra", "0"),
            // Answer every probe: a lab router should not hide behind rate limits unless asked.
            ("net.ipv4.icmp_ratelimit", "0"), ("net.ipv6.icmp.ratelimit", "0"),
        ]
        p.ipBatch.append("link set lo up")

        // Addresses and links.
        for l in links {
            for (n, end) in [(l.left, l.leftEnd), (l.right, l.rightEnd)] where n == node {
                p.interfaces.append(end.interface)
                // The veths were made in the root namespace, before this one's defaults: turn off
                // DAD on each, or its link-local address stays tentative for ~2 s and the first
                // IPv6 packets through the router wait on neighbour discovery.
                p.sysctls.append(("net.ipv6.conf.\(end.interface).accept_dad", "0"))
                p.ipBatch.append("address add \(end.ipv4)/24 dev \(end.interface)")
                p.ipBatch.append("address add \(end.ipv6)/64 dev \(end.interface) nodad")
                p.ipBatch.append("link set \(end.interface) up")
            }
        }

        switch node {
        case .client: planClient(&p, spec, links)
        case .server: planServer(&p, spec, links)
        case .hop(let path, let index): planHop(&p, spec, links, path: path, index: index)
        }
        return p
    }

    private static func planClient(_ p: inout NodePlan, _ spec: LabSpec, _ links: [Link]) {
        p.sysctls.append(("net.mptcp.enabled", spec.clientMPTCP ? "1" : "0"))
        let first0 = links.first { $0.path == 0 && $0.index == 0 }!
        p.ipBatch.append("route add default via \(first0.rightEnd.ipv4)")
        p.ipBatch.append("route add default via \(first0.rightEnd.ipv6)")
        if spec.paths.count > 1, let first1 = links.first(where: { $0.path == 1 && $0.index == 0 }) {
            p.ipBatch += [
                "route add \(Addressing.ipv4Aggregate(path: 1)) via \(first1.rightEnd.ipv4)",
                "route add \(Addressing.ipv6Aggregate(path: 1)) via \(first1.rightEnd.ipv6)",
                // Source routing: a subflow from the second address leaves on the second path.
                "route add default via \(first1.rightEnd.ipv4) table 101",
                "route add default via \(first1.rightEnd.ipv6) table 101",
                "rule add from \(first1.leftEnd.ipv4) table 101",
            ]
            p.ip6Batch.append("rule add from \(first1.leftEnd.ipv6) table 101")
            if spec.clientMPTCP {
                p.ipBatch.append("mptcp endpoint add \(first1.leftEnd.ipv4) dev p1 subflow")
            }
        }
        p.ipBatch.append("mptcp limits set subflows 4 add_addr_accepted 4")
    }

    private static func planServer(_ p: inout NodePlan, _ spec: LabSpec, _ links: [Link]) {
        p.sysctls.append(("net.mptcp.enabled", "1"))
        let csum = spec.servers.contains { $0.kind == .mptcp && $0.checksum }
        p.sysctls.append(("net.mptcp.checksum_enabled", csum ? "1" : "0"))
        let last0 = links.last { $0.path == 0 }!
        p.ipBatch.append("route add default via \(last0.leftEnd.ipv4)")
        p.ipBatch.append("route add default via \(last0.leftEnd.ipv6)")
        if spec.paths.count > 1, let last1 = links.last(where: { $0.path == 1 }) {
            p.ipBatch.append("route add \(Addressing.ipv4Aggregate(path: 1)) via \(last1.leftEnd.ipv4)")
            p.ipBatch.append("route add \(Addressing.ipv6Aggregate(path: 1)) via \(last1.leftEnd.ipv6)")
            // Replies from the second address go back on the second path.
            p.ipBatch.append("route add default via \(last1.leftEnd.ipv4) table 101")
            p.ipBatch.append("route add default via \(last1.leftEnd.ipv6) table 101")
            p.ipBatch.append("rule add from \(last1.rightEnd.ipv4) table 101")
            p.ip6Batch.append("rule add from \(last1.rightEnd.ipv6) table 101")
        }
        p.ipBatch.append("mptcp limits set subflows 4 add_addr_accepted 4")
        if spec.servers.contains(where: \.addAddr) {
            if spec.paths.count > 1, let last1 = links.last(where: { $0.path == 1 }) {
                p.ipBatch.append("mptcp endpoint add \(last1.rightEnd.ipv4) dev p1 signal")
            } else {
                // On lo: this kernel has no dummy devices (CONFIG_DUMMY is off).
                p.ipBatch += [
                    "address add \(Addressing.extraServerIPv4)/32 dev lo",
                    "address add \(Addressing.extraServerIPv6)/128 dev lo nodad",
                    "mptcp endpoint add \(Addressing.extraServerIPv4) dev lo signal",
                ]
            }
        }
        let ignoring = spec.servers.filter(\.ignoreV1).map(\.port)
        if !ignoring.isEmpty {
            // A v0-only peer: MP_CAPABLE version 1 (low nibble of the option's third byte) in
            // SYNs to these ports is overwritten with NOPs before the kernel sees it.
            let ports = ignoring.map(String.init).joined(separator: ", ")
            p.nftables = """
                table inet mptracebox {
                  chain ignorev1 {
                    type filter hook prerouting priority -140; policy accept;
                    tcp dport { \(ports) } tcp flags & (syn | ack) == syn tcp option mptcp subtype 0 tcp option @30,20,4 == 1 counter reset tcp option 30
                  }
                }

                """
        }
        if spec.anyIP {
            p.ipBatch.append("route add local \(Addressing.anyIPv4Prefix) dev lo")
            p.ipBatch.append("route add local \(Addressing.anyIPv6Prefix) dev lo")
        }
    }

    private static func planHop(_ p: inout NodePlan, _ spec: LabSpec, _ links: [Link], path: Int, index: Int) {
        p.sysctls += [("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")]
        let towardsServer = links.first { $0.path == path && $0.index == index }!
        p.ipBatch.append("route add default via \(towardsServer.rightEnd.ipv4)")
        p.ipBatch.append("route add default via \(towardsServer.rightEnd.ipv6)")
        let towardsClient = links.first { $0.path == path && $0.index == index - 1 }!
        for l in links where l.path == path && l.index < index - 1 {
            p.ipBatch.append("route add \(Addressing.ipv4(path: path, link: l.index, end: 0))/24 via \(towardsClient.leftEnd.ipv4)")
            p.ipBatch.append("route add \(Addressing.ipv6(path: path, link: l.index, end: 0))/64 via \(towardsClient.leftEnd.ipv6)")
        }
        let hop = spec.paths[path].hops[index - 1]
        renderHop(&p, hop)
    }

    // MARK: - Rule sets

    /// nftables match for a segment class (TCP only).
    static func nftMatch(_ cls: SegmentClass) -> String {
        switch cls {
        case .syn: return "tcp flags & (syn | ack) == syn"
        case .synack: return "tcp flags & (syn | ack) == syn | ack"
        case .nonsyn: return "tcp flags & syn == 0"
        case .data: return "tcp flags & syn == 0 meta mark & \(dataMark) == \(dataMark)"
        case .all: return "meta l4proto tcp"
        }
    }

    /// iptables match for a segment class.
    static func iptMatch(_ cls: SegmentClass) -> String {
        switch cls {
        case .syn: return "-p tcp --tcp-flags SYN,ACK SYN"
        case .synack: return "-p tcp --tcp-flags SYN,ACK SYN,ACK"
        case .nonsyn: return "-p tcp --tcp-flags SYN NONE"
        case .data: return "-p tcp --tcp-flags SYN NONE -m mark --mark \(dataMark)/\(dataMark)"
        case .all: return "-p tcp"
        }
    }

    static func optionMatch(_ sel: OptionSelector) -> String {
        if let sub = sel.mptcpSubtype { return "tcp option mptcp subtype \(sub)" }
        return "tcp option \(sel.kind) exists"
    }

    static func renderHop(_ p: inout NodePlan, _ hop: HopSpec) {
        var pre: [String] = [], fwd: [String] = [], out: [String] = []
        var natPre: [String] = [], natPost: [String] = [], raw: [String] = []
        var needsDataMark = false
        var iptRules: [String] = [], ipt6Rules: [String] = []
        var queue = firstQueue

        for directed in hop.behaviours {
            let (b, direction) = directed.undirected
            // A directed behaviour only sees packets entering from one side of the hop.
            let iif = direction.map { "iifname \"\($0.inputInterface)\" " } ?? ""
            if b.isElement {
                p.elements.append(ElementPlan(queue: queue, behaviour: directed))
                // The element's own rules: what it must see, minus the packets it injects.
                let rules = (try? ElementBehaviour(parsing: b.elementArgument))
                    .map { ElementBehaviour.queueRules(for: [$0], queue: queue) } ?? []
                for r in rules {
                    let line = (["-A", r.chain] + (direction.map { ["-i", $0.inputInterface] } ?? []) + r.rule).joined(separator: " ")
                    if r.tool == "ip6tables" { ipt6Rules.append(line) } else { iptRules.append(line) }
                }
                queue += 1
                continue
            }
            switch b {
            case .silent:
                out.append("icmp type { destination-unreachable, time-exceeded, parameter-problem } counter drop")
                out.append("icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } counter drop")
            case .icmpRateLimit(let ms):
                p.sysctls.removeAll { $0.0 == "net.ipv4.icmp_ratelimit" || $0.0 == "net.ipv6.icmp.ratelimit" }
                p.sysctls += [("net.ipv4.icmp_ratelimit", "\(ms)"), ("net.ipv6.icmp.ratelimit", "\(ms)")]
            case .strip(let sel, let cls, let hook):
                if cls == .data { needsDataMark = true }
                let rule = "\(iif)\(nftMatch(cls)) \(optionMatch(sel)) counter reset tcp option \(sel.kind)"
                if hook == .prerouting { pre.append(rule) } else { fwd.append(rule) }
            case .drop(let sel, let cls, let hook):
                if cls == .data { needsDataMark = true }
                let rule = "\(iif)\(nftMatch(cls)) \(optionMatch(sel)) counter drop"
                if hook == .prerouting { pre.append(rule) } else { fwd.append(rule) }
            case .setMSS(let v):
                fwd.append("tcp flags & syn == syn tcp option maxseg exists counter tcp option maxseg size set \(v)")
            case .clampMSS(let v):
                if let v {
                    fwd.append("tcp flags & syn == syn tcp option maxseg size > \(v) counter tcp option maxseg size set \(v)")
                } else {
                    fwd.append("tcp flags & syn == syn tcp option maxseg exists counter tcp option maxseg size set rt mtu")
                }
            case .setDSCP(let v):
                fwd.append("meta nfproto ipv4 counter ip dscp set \(v)")
                fwd.append("meta nfproto ipv6 counter ip6 dscp set \(v)")
            case .setECN(let a):
                let name = ["not-ect", "ect1", "ect0", "ce"][Int(a.codepoint)]
                fwd.append("meta nfproto ipv4 counter ip ecn set \(name)")
                fwd.append("meta nfproto ipv6 counter ip6 ecn set \(name)")
            case .setTTL(let v):
                fwd.append("meta nfproto ipv4 counter ip ttl set \(v)")
                fwd.append("meta nfproto ipv6 counter ip6 hoplimit set \(v)")
            case .nat:
                natPost.append("oifname \"right\" counter masquerade random")
            case .synproxy:
                raw.append("iifname \"left\" tcp flags & (syn | ack) == syn counter notrack")
                fwd.append("iifname \"left\" meta nfproto ipv4 meta l4proto tcp ct state invalid,untracked counter synproxy mss 1460 wscale 7 timestamp sack-perm")
                fwd.append("iifname \"left\" meta nfproto ipv6 meta l4proto tcp ct state invalid,untracked counter synproxy mss 1440 wscale 7 timestamp sack-perm")
                fwd.append("iifname \"left\" ct state invalid counter drop")
                p.sysctls.append(("net.ipv4.tcp_syncookies", "1"))
                p.lateSysctls.append(("net.netfilter.nf_conntrack_tcp_loose", "0"))
            case .terminatingProxy:
                natPre.append("iifname \"left\" meta l4proto tcp counter redirect to :\(proxyPort)")
                p.proxyPort = proxyPort
            default:
                break  // element behaviours handled above
            }
        }

        var chains: [String] = []
        func chain(_ name: String, _ decl: String, _ rules: [String]) {
            guard !rules.isEmpty else { return }
            chains.append("  chain \(name) {\n    \(decl)\n" + rules.map { "    \($0)\n" }.joined() + "  }\n")
        }
        if needsDataMark {
            // Non-SYN segments with payload: IP length beyond the headers (IPv4 without options,
            // IPv6 without extension headers).
            var rules: [String] = []
            for doff in 5...15 {
                rules.append("meta nfproto ipv4 ip hdrlength 5 tcp flags & syn == 0 tcp doff \(doff) ip length > \(20 + 4 * doff) meta mark set meta mark | \(dataMark)")
                rules.append("meta nfproto ipv6 ip6 nexthdr tcp tcp flags & syn == 0 tcp doff \(doff) ip6 length > \(4 * doff) meta mark set meta mark | \(dataMark)")
            }
            chain("classify", "type filter hook prerouting priority -400; policy accept;", rules)
        }
        chain("rawpre", "type filter hook prerouting priority raw; policy accept;", raw)
        chain("pre", "type filter hook prerouting priority -140; policy accept;", pre)
        chain("natpre", "type nat hook prerouting priority dstnat; policy accept;", natPre)
        chain("forward", "type filter hook forward priority -140; policy accept;", fwd)
        chain("natpost", "type nat hook postrouting priority srcnat; policy accept;", natPost)
        chain("out", "type filter hook output priority 0; policy accept;", out)
        if !chains.isEmpty {
            p.nftables = "table inet mptracebox {\n" + chains.joined() + "}\n"
        }
        if !iptRules.isEmpty {
            p.iptables = "*mangle\n" + iptRules.joined(separator: "\n") + "\nCOMMIT\n"
            p.ip6tables = "*mangle\n" + ipt6Rules.joined(separator: "\n") + "\nCOMMIT\n"
        }
    }
}
