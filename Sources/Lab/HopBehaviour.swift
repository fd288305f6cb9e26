// What one hop of a lab path does to the traffic it forwards.
//
// The text form (`strip:30@syn`, `mss:clamp:1400`, `delay:20`) is the single grammar used on
// the command line, in YAML lab files and as the element's `--behaviour` argument, so
// `HopBehaviour(parsing: b.description) == b` for every value.

/// Which segments a behaviour applies to.
public enum SegmentClass: String, Sendable, Hashable, Codable, CaseIterable {
    /// SYN without ACK.
    case syn
    /// SYN with ACK.
    case synack
    /// Every segment without SYN (ACKs, data, FIN, RST).
    case nonsyn
    /// Segments without SYN that carry payload.
    case data
    /// Every TCP segment.
    case all
}

/// Where in the hop the change is made. A change in prerouting is already visible in the
/// hop's own ICMP quote; a change in forward only shows from the next hop on.
public enum Hook: String, Sendable, Hashable, Codable {
    case prerouting = "pre"
    case forward = "fwd"
}

/// Which way a directed behaviour (`@toserver`, `@toclient`) acts: the hop's interface the
/// packets come in on (`left` faces the client, `right` the server).
public enum TrafficDirection: String, Sendable, Hashable, Codable, CaseIterable {
    case toServer = "toserver"
    case toClient = "toclient"

    /// The hop interface such packets arrive on.
    public var inputInterface: String { self == .toServer ? "left" : "right" }
}

/// ECN codepoint written by an `ecn:` middlebox.
public enum ECNAction: String, Sendable, Hashable, Codable, CaseIterable {
    case clear, ect0, ect1, ce

    /// The two-bit codepoint.
    public var codepoint: UInt8 {
        switch self {
        case .clear: return 0
        case .ect1: return 1
        case .ect0: return 2
        case .ce: return 3
        }
    }
}

/// One behaviour of a hop. A hop with no behaviour is a plain Linux router.
public enum HopBehaviour: Sendable, Hashable {
    // Routers.
    /// Does not send any ICMP error (time-exceeded, unreachable).
    case silent
    /// Sends ICMP errors at most once per `milliseconds` per destination (kernel rate limit).
    case icmpRateLimit(milliseconds: Int)
    /// Quotes only the IP header and 8 bytes in ICMP errors (RFC 792 style). [element]
    case rfc792Quotes

    // Middleboxes (nftables / iptables in the hop namespace).
    /// Overwrites the option with NOPs (kind only), or removes one MPTCP subtype [element].
    case strip(OptionSelector, on: SegmentClass, hook: Hook)
    /// Removes the option, shrinking the header (data offset and lengths fixed). [element]
    case remove(OptionSelector, on: SegmentClass, hook: Hook)
    /// Drops segments that carry the option (or MPTCP subtype).
    case drop(OptionSelector, on: SegmentClass, hook: Hook)
    /// Replaces the option with EOL. [element]
    case replaceWithEOL(OptionSelector, on: SegmentClass, hook: Hook)
    /// Inverts the option's value bytes (keys, HMACs, nonces, tokens), keeping its kind, length
    /// and MPTCP subtype; the TCP checksum is fixed. [element]
    case corrupt(OptionSelector, on: SegmentClass, hook: Hook)
    /// Sets the MSS option of SYN and SYN/ACK segments to this value.
    case setMSS(UInt16)
    /// Lowers the MSS option to this value (or to the route's MTU when nil) when it is larger.
    case clampMSS(UInt16?)
    case setDSCP(UInt8)
    case setECN(ECNAction)
    case setTTL(UInt8)
    /// Source NAT (masquerade) towards the server, with randomised source ports.
    case nat
    /// The kernel's SYNPROXY: answers SYNs itself with cookies, then splices the connection
    /// to the server with rewritten sequence numbers.
    case synproxy
    /// A transparent terminating TCP proxy: connections are redirected to a process in the hop
    /// that opens its own plain TCP connection to the original destination.
    case terminatingProxy

    // Userspace NFQUEUE element behaviours. [element]
    case randomiseSequence
    /// Replaces `find` with `replace` in segment payloads (bytes given as text).
    case payloadRewrite(find: String, replace: String)
    /// Splits each data segment into segments of at most `bytes` payload bytes.
    case split(bytes: Int)
    /// Coalesces consecutive data segments.
    case coalesce
    /// Echoes the client's MP_CAPABLE back in the SYN/ACK.
    case echoMPCapable
    case delay(milliseconds: Int)
    /// Loss, duplication and reordering probabilities in percent.
    case loss(percent: Double)
    case duplicate(percent: Double)
    case reorder(percent: Double)

    /// An option behaviour (strip, remove, drop, eol) acting in one direction only.
    indirect case directed(HopBehaviour, TrafficDirection)

    /// The behaviour without its direction, and the direction (nil: both ways).
    public var undirected: (behaviour: HopBehaviour, direction: TrafficDirection?) {
        if case .directed(let b, let d) = self { return (b, d) }
        return (self, nil)
    }

    /// True when the behaviour needs the userspace NFQUEUE element (`mptracebox lab _element`).
    public var isElement: Bool {
        switch self {
        case .directed(let b, _):
            return b.isElement
        case .rfc792Quotes, .replaceWithEOL, .remove, .corrupt, .randomiseSequence, .payloadRewrite, .split, .coalesce,
             .echoMPCapable, .delay, .loss, .duplicate, .reorder:
            return true
        case .strip(let sel, _, _):
            // nftables resets whole options only; a single MPTCP subtype needs the element.
            return sel.mptcpSubtype != nil
        case .silent, .icmpRateLimit, .drop, .setMSS, .clampMSS, .setDSCP, .setECN, .setTTL, .nat,
             .synproxy, .terminatingProxy:
            return false
        }
    }

    /// The `--behaviour` argument passed to the element: the canonical text form, with the
    /// segment class and hook spelt out so that no default can differ between the two parsers.
    public var elementArgument: String {
        switch self {
        case .directed(let b, _):
            // The direction is enforced by the queue rules (`-i left|right`), not the element.
            return b.elementArgument
        case .strip(let sel, let cls, let hook), .replaceWithEOL(let sel, let cls, let hook), .remove(let sel, let cls, let hook),
             .corrupt(let sel, let cls, let hook):
            let name: String
            switch self {
            case .strip: name = "strip"
            case .remove: name = "remove"
            case .corrupt: name = "corrupt"
            default: name = "eol"
            }
            return "\(name):\(sel)@\(cls.rawValue)@\(hook.rawValue)"
        default:
            return description
        }
    }
}

extension HopBehaviour: CustomStringConvertible {
    public var description: String {
        func qualifiers(_ cls: SegmentClass, _ hook: Hook, default def: SegmentClass) -> String {
            (cls == def ? "" : "@\(cls.rawValue)") + (hook == .forward ? "" : "@pre")
        }
        switch self {
        case .silent: return "silent"
        case .icmpRateLimit(let ms): return "ratelimit:\(ms)"
        case .rfc792Quotes: return "rfc792"
        case .strip(let sel, let cls, let hook): return "strip:\(sel)" + qualifiers(cls, hook, default: .all)
        case .drop(let sel, let cls, let hook): return "drop:\(sel)" + qualifiers(cls, hook, default: .all)
        case .remove(let sel, let cls, let hook): return "remove:\(sel)" + qualifiers(cls, hook, default: .all)
        case .replaceWithEOL(let sel, let cls, let hook): return "eol:\(sel)" + qualifiers(cls, hook, default: .all)
        case .corrupt(let sel, let cls, let hook): return "corrupt:\(sel)" + qualifiers(cls, hook, default: .all)
        case .setMSS(let v): return "mss:\(v)"
        case .clampMSS(let v): return v.map { "mss:clamp:\($0)" } ?? "mss:clamp"
        case .setDSCP(let v): return "dscp:\(v)"
        case .setECN(let a): return "ecn:\(a.rawValue)"
        case .setTTL(let v): return "ttl:\(v)"
        case .nat: return "nat"
        case .synproxy: return "synproxy"
        case .terminatingProxy: return "proxy"
        case .randomiseSequence: return "seqrand"
        case .payloadRewrite(let f, let r): return "payload:\(f)=\(r)"
        case .split(let n): return "split:\(n)"
        case .coalesce: return "coalesce"
        case .echoMPCapable: return "echo-mpc"
        case .delay(let ms): return "delay:\(ms)"
        case .loss(let p): return "loss:\(Self.format(p))"
        case .duplicate(let p): return "dup:\(Self.format(p))"
        case .reorder(let p): return "reorder:\(Self.format(p))"
        case .directed(let b, let d): return "\(b)@\(d.rawValue)"
        }
    }

    private static func format(_ p: Double) -> String {
        p == p.rounded() ? String(Int(p)) : String(p)
    }
}

extension HopBehaviour {
    /// Every behaviour name, for help texts and error messages.
    public static let names = [
        "router", "silent", "ratelimit[:MS]", "rfc792", "strip:KIND[/SUB][@CLASS][@pre][@DIR]",
        "drop:KIND[/SUB][@CLASS][@pre][@DIR]", "remove:KIND[/SUB][@CLASS][@pre][@DIR]", "eol:KIND[@CLASS][@pre][@DIR]",
        "corrupt:KIND[/SUB][@CLASS][@pre][@DIR]", "mss:N", "mss:clamp[:N]",
        "dscp:N", "ecn:clear|ect0|ect1|ce", "ttl:N", "nat", "synproxy", "proxy", "seqrand",
        "payload:FIND=REPLACE", "split:N", "coalesce", "echo-mpc", "delay:MS", "loss:P", "dup:P",
        "reorder:P",
    ]

    /// Parses one behaviour. `router` is not a behaviour (it is the empty list); see `HopSpec`.
    public init(parsing text: String) throws {
        // Qualifiers: NAME[:ARG]@CLASS@pre (in any order after the argument).
        var pieces = text.split(separator: "@", omittingEmptySubsequences: false).map(String.init)
        let head = pieces.removeFirst()
        var cls: SegmentClass?
        var hook = Hook.forward
        var direction: TrafficDirection?
        for q in pieces {
            if let c = SegmentClass(rawValue: q.lowercased()) {
                guard cls == nil else { throw LabSpecError.badBehaviour(text, "two segment classes given") }
                cls = c
            } else if q.lowercased() == "pre" || q.lowercased() == "prerouting" {
                hook = .prerouting
            } else if q.lowercased() == "fwd" || q.lowercased() == "forward" {
                hook = .forward
            } else if let d = TrafficDirection(rawValue: q.lowercased()) {
                guard direction == nil else { throw LabSpecError.badBehaviour(text, "two directions given") }
                direction = d
            } else {
                throw LabSpecError.badBehaviour(text, "unknown qualifier '@\(q)' (use @syn, @synack, @nonsyn, @data, @all, @pre, @toserver, @toclient)")
            }
        }
        let colon = head.firstIndex(of: ":")
        let name = String(colon.map { head[..<$0] } ?? head[...]).lowercased()
        let arg: String? = colon.map { String(head[head.index(after: $0)...]) }

        func needArg() throws -> String {
            guard let arg, !arg.isEmpty else { throw LabSpecError.badBehaviour(text, "'\(name)' needs an argument") }
            return arg
        }
        func noArg() throws {
            guard arg == nil else { throw LabSpecError.badBehaviour(text, "'\(name)' takes no argument") }
        }
        if let direction {
            guard ["strip", "drop", "remove", "eol", "corrupt"].contains(name) else {
                throw LabSpecError.badBehaviour(text, "@\(direction.rawValue) applies to strip, drop, remove, eol and corrupt only")
            }
            let inner = try HopBehaviour(parsing: ([head] + pieces.filter { TrafficDirection(rawValue: $0.lowercased()) == nil }).joined(separator: "@"))
            self = .directed(inner, direction)
            return
        }
        func noQualifiers() throws {
            guard pieces.isEmpty else { throw LabSpecError.badBehaviour(text, "'\(name)' takes no @ qualifier") }
        }
        func int<T: FixedWidthInteger>(_ s: String, _ range: ClosedRange<T>, _ what: String) throws -> T {
            guard let v = T(s), range.contains(v) else {
                throw LabSpecError.badBehaviour(text, "\(what) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(s)'")
            }
            return v
        }
        func percent(_ s: String) throws -> Double {
            guard let v = Double(s), v >= 0, v <= 100 else {
                throw LabSpecError.badBehaviour(text, "a percentage in 0...100 is needed, got '\(s)'")
            }
            return v
        }

        switch name {
        case "silent": try noArg(); try noQualifiers(); self = .silent
        case "ratelimit":
            try noQualifiers()
            self = .icmpRateLimit(milliseconds: try arg.map { try int($0, 1...60_000, "the rate limit (ms)") } ?? 1000)
        case "rfc792": try noArg(); try noQualifiers(); self = .rfc792Quotes
        case "strip": self = .strip(try OptionSelector(parsing: needArg()), on: cls ?? .all, hook: hook)
        case "drop": self = .drop(try OptionSelector(parsing: needArg()), on: cls ?? .all, hook: hook)
        case "remove", "eol":
            // Done by the userspace element, which walks real options: padding is not one.
            let sel = try OptionSelector(parsing: needArg())
            guard sel.kind > 1 else { throw LabSpecError.badBehaviour(text, "EOL and NOP are padding, not options a box can \(name == "eol" ? "replace" : "remove"); name an option kind") }
            self = name == "eol" ? .replaceWithEOL(sel, on: cls ?? .all, hook: hook) : .remove(sel, on: cls ?? .all, hook: hook)
        case "corrupt":
            let sel = try OptionSelector(parsing: needArg())
            guard sel.kind > 1 else { throw LabSpecError.badBehaviour(text, "EOL and NOP have no value bytes to corrupt") }
            self = .corrupt(sel, on: cls ?? .all, hook: hook)
        case "mss":
            try noQualifiers()
            let a = try needArg()
            if a == "clamp" {
                self = .clampMSS(nil)
            } else if a.hasPrefix("clamp:") {
                self = .clampMSS(try int(String(a.dropFirst(6)), 88...65535, "the MSS"))
            } else {
                self = .setMSS(try int(a, 88...65535, "the MSS"))
            }
        case "dscp": try noQualifiers(); self = .setDSCP(try int(needArg(), 0...63, "the DSCP"))
        case "ecn":
            try noQualifiers()
            let a = try needArg()
            guard let action = ECNAction(rawValue: a.lowercased()) else {
                throw LabSpecError.badBehaviour(text, "ecn needs one of clear, ect0, ect1, ce")
            }
            self = .setECN(action)
        case "ttl": try noQualifiers(); self = .setTTL(try int(needArg(), 1...255, "the TTL"))
        case "nat": try noArg(); try noQualifiers(); self = .nat
        case "synproxy": try noArg(); try noQualifiers(); self = .synproxy
        case "proxy": try noArg(); try noQualifiers(); self = .terminatingProxy
        case "seqrand": try noArg(); try noQualifiers(); self = .randomiseSequence
        case "payload":
            try noQualifiers()
            let a = try needArg()
            guard let eq = a.firstIndex(of: "="), eq != a.startIndex else {
                throw LabSpecError.badBehaviour(text, "payload needs FIND=REPLACE, e.g. payload:GET=PUT")
            }
            self = .payloadRewrite(find: String(a[..<eq]), replace: String(a[a.index(after: eq)...]))
        case "split": try noQualifiers(); self = .split(bytes: try int(needArg(), 1...65535, "the segment size"))
        case "coalesce": try noArg(); try noQualifiers(); self = .coalesce
        case "echo-mpc": try noArg(); try noQualifiers(); self = .echoMPCapable
        case "delay": try noQualifiers(); self = .delay(milliseconds: try int(needArg(), 0...60_000, "the delay (ms)"))
        case "loss": try noQualifiers(); self = .loss(percent: try percent(needArg()))
        case "dup": try noQualifiers(); self = .duplicate(percent: try percent(needArg()))
        case "reorder": try noQualifiers(); self = .reorder(percent: try percent(needArg()))
        default:
            throw LabSpecError.badBehaviour(text, "unknown behaviour '\(name)'; known: \(Self.names.joined(separator: ", "))")
        }
    }
}
