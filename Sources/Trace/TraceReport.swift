import Wire
import Diff
import Report

/// The trace as the contract's JSON document (`mptracebox.trace/1`) and as terminal text.
public enum TraceReport {
    public static let schema = "mptracebox.trace/1"

    public static func json(_ r: TraceResult, names: [IPAddress: String] = [:]) -> JSON {
        let hops: [JSON] = r.hops.map { h in
            var m: [(String, JSON)] = [("ttl", .number(h.ttl)), ("address", h.address.map { .string($0.description) } ?? .null)]
            if let a = h.address, let n = names[a] { m.append(("name", .string(n))) }
            m += [("rtt_ms", h.rttMilliseconds.map { .double($0) } ?? .null), ("reply", .string(h.reply.rawValue)),
                  ("probes", .number(h.probes))]
            if let t = h.icmpType { m += [("icmp_type", .number(t)), ("icmp_code", .optional(h.icmpCode))] }
            m += [("quote", .string((h.diff?.kind ?? .none).rawValue)), ("quoted_bytes", .number(h.diff?.quotedBytes ?? 0)),
                  ("changes", .array((h.diff?.changes ?? []).map(WireJSON.change)))]
            if !h.mpls.isEmpty {
                m.append(("mpls", .array(h.mpls.map { e in
                    .object([("label", .number(e.label)), ("exp", .number(e.exp)), ("s", .number(e.bottomOfStack ? 1 : 0)), ("ttl", .number(e.ttl))])
                })))
            }
            if let seg = h.tcpReply {
                m.append(("tcp", .object([("flags", .string(seg.header.flags.description)),
                                          ("options", .array(seg.header.options.options.map(WireJSON.option)))])))
            }
            if let how = h.matchedBy { m.append(("matched_by", .string(how))) }
            return .compact(m)
        }
        let d = r.destination
        let destination = JSON.compact([
            ("reached", .bool(d.reached)), ("reply", .string(d.reply.rawValue)), ("ttl", .optional(d.ttl)),
            ("address", d.address.map { .string($0.description) } ?? .null),
            ("options", .array(d.options.map(WireJSON.option))),
        ])
        return .object([
            ("schema", .string(schema)),
            ("target", .string(r.target.description)), ("port", .number(r.port)), ("family", .string(r.family)),
            ("probe", .string(r.probeText)),
            ("mode", .string(r.sequential ? "sequential" : "parallel")),
            ("sent", WireJSON.packet(r.sent)),
            ("hops", .array(hops)),
            ("destination", destination),
            ("findings", .array(r.findings.map(WireJSON.finding))),
            ("stop_reason", .string(r.stopReason.rawValue)),
            ("duration_s", .double(r.durationSeconds)),
            ("probes_sent", .number(r.probesSent)),
        ])
    }

    /// One line per hop, then the findings. `color` adds ANSI colours (on a TTY).
    public static func text(_ r: TraceResult, names: [IPAddress: String] = [:], color: Bool = false) -> String {
        func paint(_ s: String, _ code: String) -> String { color ? "\u{1b}[\(code)m\(s)\u{1b}[0m" : s }
        var out = "mptracebox to \(r.target) port \(r.port) (\(r.family)), probe \(r.probeText)\n"
        for h in r.hops {
            let ttl = String(h.ttl).leftPadded(3)
            guard let a = h.address else {
                out += "\(ttl)  *  (no reply to \(h.probes) probe\(h.probes == 1 ? "" : "s"))\n"
                continue
            }
            var line = "\(ttl)  \(a)"
            if let n = names[a] { line += " (\(n))" }
            if let rtt = h.rttMilliseconds { line += "  \(formatMs(rtt)) ms" }
            switch h.reply {
            case .timeExceeded: line += "  [\(h.diff?.kind.rawValue ?? "none") quote, \(h.diff?.quotedBytes ?? 0) B]"
            default: line += "  " + paint(h.reply.rawValue.uppercased(), "1")
            }
            let changes = h.diff?.changes ?? []
            if !changes.isEmpty { line += "  " + paint(changes.map(WireText.change).joined(separator: " "), "33") }
            if let seg = h.tcpReply {
                line += "  " + seg.header.options.options.filter { $0 != .noOperation && $0 != .endOfList }.map(WireText.option).joined(separator: " ")
            }
            if !h.mpls.isEmpty { line += "  MPLS " + h.mpls.map { "L=\($0.label),E=\($0.exp),S=\($0.bottomOfStack ? 1 : 0),TTL=\($0.ttl)" }.joined(separator: " ") }
            out += line + "\n"
        }
        out += "\n"
        if r.findings.isEmpty {
            out += paint("no interference found", "32") + "\n"
        } else {
            out += "findings:\n"
            for f in r.findings { out += "  " + paint(findingLine(f), f.id.rawValue.hasPrefix("dest.mp-capable") && f.id != .destMPCapableEchoed ? "32" : "33") + "\n" }
        }
        let reached = r.destination.reached ? "destination reached at TTL \(r.destination.ttl ?? 0)" : "destination not reached"
        out += "\(reached); \(r.probesSent) probes in \(formatMs(r.durationSeconds * 1000)) ms (\(r.sequential ? "sequential" : "parallel"), stop: \(r.stopReason.rawValue))\n"
        return out
    }

    static func findingLine(_ f: Finding) -> String {
        var s = "\(f.id.rawValue) at hop \(f.hop)"
        if let a = f.after { s += " (intact at hop \(a))" }
        var parts: [String] = []
        if let k = f.detail.kind { parts.append(WireText.optionName(kind: k, subtype: f.detail.subtype)) }
        if let field = f.detail.field { parts.append(field) }
        if let sent = f.detail.sent, let rec = f.detail.received { parts.append("\(WireText.value(sent)) → \(WireText.value(rec))") }
        if let v = f.detail.version { parts.append("version \(v)") }
        if let fl = f.detail.flags { parts.append("flags 0x\(String(fl, radix: 16))") }
        if let b = f.detail.quotedBytes { parts.append("\(b)-byte quote") }
        if let n = f.detail.note { parts.append(n) }
        if !parts.isEmpty { s += ": " + parts.joined(separator: ", ") }
        return s
    }

    static func formatMs(_ v: Double) -> String {
        let scaled = (v * 1000).rounded() / 1000
        return String(scaled)
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

extension TraceEngine {
    /// The capture filter for a trace: ICMP errors (which quote our probes), echo replies (the proxy
    /// check) and TCP from the target's port to ours.
    public static func captureFilter(_ c: TraceConfiguration) -> String {
        let sport = c.probe.tcp.sourcePort ?? c.sourcePort
        let dport = c.probe.tcp.destinationPort ?? c.destinationPort
        let host = c.target.description
        // The blackhole check's control probe uses the next source port.
        let ports = "(dst port \(sport) or dst port \(TraceEngine.controlPort(sport)))"
        switch c.target {
        case .v4:
            return "(icmp and (icmp[0] = 11 or icmp[0] = 3 or icmp[0] = 12 or icmp[0] = 0)) or (tcp and src host \(host) and src port \(dport) and \(ports))"
        case .v6:
            // ip6 protochain would be exact; icmp6 covers what routers send.
            return "(icmp6 and (ip6[40] = 1 or ip6[40] = 2 or ip6[40] = 3 or ip6[40] = 4 or ip6[40] = 129)) or (tcp and src host \(host) and src port \(dport) and \(ports))"
        }
    }
}
