// What the lab's userspace middlebox element (`mptracebox lab _element`) does to the packets
// queued to it, and the one text grammar for it.
//
// The grammar is the single source of truth: the command line, lab files and the lab's hop
// behaviours all carry the text and call `ElementBehaviour(parsing:)`, and
// `ElementBehaviour(parsing: b.description) == b` for every value. See docs/lab-element.md.

import Wire

/// Why a behaviour text was rejected.
public struct ElementBehaviourError: Error, Hashable, Sendable, CustomStringConvertible {
    public let text: String
    public let reason: String

    public init(_ text: String, _ reason: String) {
        self.text = text
        self.reason = reason
    }

    public var description: String { "element behaviour \"\(text)\": \(reason)" }
}

/// One behaviour of the element.
public struct ElementBehaviour: Hashable, Sendable {
    /// The segments a behaviour applies to.
    public enum Segments: String, Hashable, Sendable, CaseIterable {
        /// SYN without ACK.
        case syn
        /// SYN with ACK.
        case synack
        /// A pure ACK: no SYN, FIN or RST, no payload.
        case ack
        /// A segment without SYN that carries payload.
        case data
        /// Every segment without SYN.
        case nonsyn
        /// Every TCP segment.
        case all

        public func matches(_ flags: TCPFlags, payloadLength: Int) -> Bool {
            let syn = flags.contains(.syn)
            switch self {
            case .syn: return syn && !flags.contains(.ack)
            case .synack: return syn && flags.contains(.ack)
            case .ack:
                return !syn && !flags.contains(.fin) && !flags.contains(.rst) && flags.contains(.ack) && payloadLength == 0
            case .data: return !syn && payloadLength > 0
            case .nonsyn: return !syn
            case .all: return true
            }
        }
    }

    /// The netfilter hook whose packets a behaviour acts on. A change made in prerouting is
    /// visible in the box's own ICMP quotes; one made in forward only from the next hop on.
    public enum Hook: String, Hashable, Sendable {
        case prerouting = "pre"
        case forward = "fwd"
    }

    /// The option an option behaviour acts on: the same selector and names as the hop grammar.
    public typealias Option = OptionSelector

    /// A same-length payload change.
    public enum PayloadEdit: Hashable, Sendable {
        /// Every occurrence of `find` becomes `replace` (same length, so sequence space is kept).
        case replace(find: [UInt8], with: [UInt8])
        /// The bytes at `offset` of every data segment long enough are overwritten.
        case overwrite(offset: Int, bytes: [UInt8])
    }

    public enum Kind: Hashable, Sendable {
        /// Overwrite the option with NOPs (what iptables TCPOPTSTRIP and most boxes do).
        case strip(Option)
        /// Remove the option, shrinking the header.
        case remove(Option)
        /// Drop segments that carry the option.
        case drop(Option)
        /// Overwrite the option with EOL bytes: it and every option after it are gone.
        case eol(Option)
        /// Invert the option's value bytes (see `Transforms.corruptOptions`).
        case corrupt(Option)
        /// A random sequence-number offset per connection and direction (seq one way, ack and
        /// SACK blocks the other way).
        case seqrand
        case payload(PayloadEdit)
        /// Split data segments into pieces of at most `bytes` payload bytes.
        case split(bytes: Int)
        /// Merge consecutive data segments of a direction up to the receiver's MSS.
        case coalesce
        /// Answer a SYN carrying MP_CAPABLE with a SYN/ACK carrying the same MP_CAPABLE; the SYN
        /// is not forwarded.
        case echoMPCapable
        case delay(milliseconds: Int)
        case loss(percent: Double)
        case duplicate(percent: Double)
        case reorder(percent: Double)
        /// An RFC 792 router: ICMP time-exceeded quoting only the IP header and 8 bytes.
        case rfc792
    }

    public var kind: Kind
    public var segments: Segments
    public var hook: Hook

    public init(_ kind: Kind, segments: Segments? = nil, hook: Hook? = nil) {
        self.kind = kind
        self.segments = segments ?? Self.defaultSegments(kind)
        self.hook = hook ?? Self.defaultHook(kind)
    }

    static func defaultSegments(_ k: Kind) -> Segments {
        switch k {
        case .payload, .split, .coalesce: return .data
        case .echoMPCapable: return .syn
        default: return .all
        }
    }

    static func defaultHook(_ k: Kind) -> Hook {
        if case .rfc792 = k { return .prerouting }
        return .forward
    }

    /// Behaviours whose segment class is fixed by what they do.
    static func takesSegmentClass(_ k: Kind) -> Bool {
        switch k {
        case .strip, .remove, .drop, .eol, .corrupt, .delay, .loss, .duplicate, .reorder: return true
        case .payload, .split, .coalesce, .echoMPCapable, .seqrand, .rfc792: return false
        }
    }

    /// The forms accepted, for help and error messages.
    public static let grammar = [
        "strip:KIND[/SUB]", "remove:KIND[/SUB]", "drop:KIND[/SUB]", "eol:KIND[/SUB]", "corrupt:KIND[/SUB]", "seqrand",
        "payload:s/OLD/NEW/", "payload:x/HEXOLD/HEXNEW/", "payload:o/OFFSET/HEX/", "payload:OLD=NEW",
        "split:N", "coalesce", "echo-mpc", "delay:MS", "loss:PCT", "dup:PCT", "reorder:PCT", "rfc792",
    ]
    public static let names = ["strip", "remove", "drop", "eol", "corrupt", "seqrand", "payload", "split", "coalesce",
                               "echo-mpc", "delay", "loss", "dup", "reorder", "rfc792"]
}

extension ElementBehaviour: CustomStringConvertible {
    public var description: String {
        let head: String
        switch kind {
        case .strip(let o): head = "strip:\(o)"
        case .remove(let o): head = "remove:\(o)"
        case .drop(let o): head = "drop:\(o)"
        case .eol(let o): head = "eol:\(o)"
        case .corrupt(let o): head = "corrupt:\(o)"
        case .seqrand: head = "seqrand"
        case .payload(.replace(let f, let r)):
            if let fs = Self.plainText(f), let rs = Self.plainText(r) {
                head = "payload:s/\(fs)/\(rs)/"
            } else {
                head = "payload:x/\(f.hexString)/\(r.hexString)/"
            }
        case .payload(.overwrite(let off, let b)): head = "payload:o/\(off)/\(b.hexString)/"
        case .split(let n): head = "split:\(n)"
        case .coalesce: head = "coalesce"
        case .echoMPCapable: head = "echo-mpc"
        case .delay(let ms): head = "delay:\(ms)"
        case .loss(let p): head = "loss:\(Self.format(p))"
        case .duplicate(let p): head = "dup:\(Self.format(p))"
        case .reorder(let p): head = "reorder:\(Self.format(p))"
        case .rfc792: head = "rfc792"
        }
        var s = head
        if segments != Self.defaultSegments(kind) { s += "@\(segments.rawValue)" }
        if hook != Self.defaultHook(kind) { s += "@\(hook.rawValue)" }
        return s
    }

    /// Payload bytes that can be written as `s/…/…/` text (printable ASCII without `/` and `@`).
    static func plainText(_ b: [UInt8]) -> String? {
        guard !b.isEmpty, b.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "@") })
        else { return nil }
        return String(decoding: b, as: UTF8.self)
    }

    static func format(_ p: Double) -> String { p == p.rounded() ? String(Int(p)) : String(p) }

    /// Parses one behaviour: `NAME[:ARG][@CLASS][@pre|@fwd]`.
    public init(parsing text: String) throws {
        var pieces = text.split(separator: "@", omittingEmptySubsequences: false).map(String.init)
        let head = pieces.removeFirst()
        let colon = head.firstIndex(of: ":")
        let name = String(colon.map { head[..<$0] } ?? head[...]).lowercased()
        let arg: String? = colon.map { String(head[head.index(after: $0)...]) }

        func fail(_ why: String) -> ElementBehaviourError { ElementBehaviourError(text, why) }
        func needArg() throws -> String {
            guard let arg, !arg.isEmpty else { throw fail("\"\(name)\" needs an argument, e.g. \(Self.example(name))") }
            return arg
        }
        func noArg() throws {
            guard arg == nil else { throw fail("\"\(name)\" takes no argument") }
        }
        func int(_ s: String, _ range: ClosedRange<Int>, _ what: String) throws -> Int {
            guard let v = Int(s), range.contains(v) else {
                throw fail("\(what) must be an integer in \(range.lowerBound)...\(range.upperBound), got \"\(s)\"")
            }
            return v
        }
        func percent(_ s: String) throws -> Double {
            guard let v = Double(s), v.isFinite, v >= 0, v <= 100 else {
                throw fail("a percentage in 0...100 is needed, got \"\(s)\"")
            }
            return v
        }

        let k: Kind
        switch name {
        case "strip": k = .strip(try Option(parsing: needArg(), in: text))
        case "remove": k = .remove(try Option(parsing: needArg(), in: text))
        case "drop": k = .drop(try Option(parsing: needArg(), in: text))
        case "eol": k = .eol(try Option(parsing: needArg(), in: text))
        case "corrupt": k = .corrupt(try Option(parsing: needArg(), in: text))
        case "seqrand": try noArg(); k = .seqrand
        case "payload": k = .payload(try Self.parsePayload(needArg(), in: text))
        case "split": k = .split(bytes: try int(needArg(), 1...65535, "the piece size (bytes)"))
        case "coalesce": try noArg(); k = .coalesce
        case "echo-mpc": try noArg(); k = .echoMPCapable
        case "delay": k = .delay(milliseconds: try int(needArg(), 0...60_000, "the delay (ms)"))
        case "loss": k = .loss(percent: try percent(needArg()))
        case "dup": k = .duplicate(percent: try percent(needArg()))
        case "reorder": k = .reorder(percent: try percent(needArg()))
        case "rfc792": try noArg(); k = .rfc792
        default:
            throw fail("unknown behaviour \"\(name)\"; known: \(Self.grammar.joined(separator: ", "))")
        }

        var segments: Segments?
        var hook: Hook?
        for q in pieces.map({ $0.lowercased() }) {
            if let c = Segments(rawValue: q) {
                guard segments == nil else { throw fail("two segment classes given") }
                guard Self.takesSegmentClass(k) else {
                    throw fail("\"\(name)\" applies to \(Self.defaultSegments(k).rawValue) segments only; drop \"@\(q)\"")
                }
                segments = c
            } else if q == "pre" || q == "prerouting" || q == "fwd" || q == "forward" {
                guard hook == nil else { throw fail("two hooks given") }
                if case .rfc792 = k { throw fail("rfc792 always works in prerouting; drop \"@\(q)\"") }
                hook = q.hasPrefix("pre") ? .prerouting : .forward
            } else {
                throw fail("unknown qualifier \"@\(q)\" (segment classes: \(Segments.allCases.map { "@\($0.rawValue)" }.joined(separator: ", ")); hooks: @pre, @fwd)")
            }
        }
        self.init(k, segments: segments, hook: hook)
    }

    static func example(_ name: String) -> String {
        switch name {
        case "strip", "remove", "drop", "eol", "corrupt": return "\(name):30/2@data"
        case "payload": return "payload:s/GET/PUT/"
        case "split": return "split:100"
        case "delay": return "delay:20"
        default: return "\(name):5"
        }
    }

    static func parsePayload(_ a: String, in text: String) throws -> PayloadEdit {
        func fail(_ why: String) -> ElementBehaviourError { ElementBehaviourError(text, why) }
        // FIND=REPLACE, the lab's short form.
        if !a.hasPrefix("s/"), !a.hasPrefix("x/"), !a.hasPrefix("o/") {
            guard let eq = a.firstIndex(of: "="), eq != a.startIndex else {
                throw fail("payload needs s/OLD/NEW/, x/HEXOLD/HEXNEW/, o/OFFSET/HEX/ or OLD=NEW")
            }
            return try sameLength(Array(a[..<eq].utf8), Array(a[a.index(after: eq)...].utf8), text)
        }
        let parts = a.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[3].isEmpty else {
            throw fail("payload:\(parts[0])/…/…/ needs exactly two fields between slashes and a closing slash")
        }
        switch parts[0] {
        case "s":
            return try sameLength(Array(parts[1].utf8), Array(parts[2].utf8), text)
        case "x":
            guard let f = [UInt8](hexString: parts[1]), let r = [UInt8](hexString: parts[2]) else {
                throw fail("payload:x/ takes hex bytes, e.g. payload:x/474554/505554/")
            }
            return try sameLength(f, r, text)
        default:
            guard let off = Int(parts[1]), off >= 0, off <= 65535 else {
                throw fail("payload:o/ needs a byte offset in 0...65535, got \"\(parts[1])\"")
            }
            guard let b = [UInt8](hexString: parts[2]), !b.isEmpty else {
                throw fail("payload:o/ needs hex bytes to write, e.g. payload:o/0/deadbeef/")
            }
            return .overwrite(offset: off, bytes: b)
        }
    }

    static func sameLength(_ f: [UInt8], _ r: [UInt8], _ text: String) throws -> PayloadEdit {
        guard !f.isEmpty else { throw ElementBehaviourError(text, "the text to find is empty") }
        guard f.count == r.count else {
            throw ElementBehaviourError(text, "the replacement must have the same length as the text it replaces (\(f.count) bytes, got \(r.count)): a longer or shorter payload would shift the sequence space")
        }
        return .replace(find: f, with: r)
    }
}

extension OptionSelector {
    /// The element's reading of an option argument; errors name the whole behaviour `whole`.
    init(parsing text: String, in whole: String) throws {
        try self.init(parsing: text) { ElementBehaviourError(whole, $0) }
        // EOL and NOP are not options one can strip or replace.
        guard kind > 1 else { throw ElementBehaviourError(whole, "option kind \(kind) (EOL/NOP) cannot be selected") }
    }
}

/// One iptables/ip6tables rule (mangle table) that feeds an element's queue. The kernel here has
/// no nft queue expression, so the element is reached through iptables (nft backend, xt compat).
public struct ElementQueueRule: Hashable, Sendable {
    /// "iptables" or "ip6tables".
    public var tool: String
    public var chain: String
    /// Matches and target, after the chain.
    public var rule: [String]

    public init(tool: String, chain: String, rule: [String]) {
        self.tool = tool
        self.chain = chain
        self.rule = rule
    }

    public var addArguments: [String] { [tool, "-w", "-t", "mangle", "-A", chain] + rule }
    public var deleteArguments: [String] { [tool, "-w", "-t", "mangle", "-D", chain] + rule }
}

extension ElementBehaviour {
    /// The rules that queue to `queue` what `behaviours` act on. Packets the element injects
    /// carry `ElementPipeline.injectionMark` and are never queued again.
    public static func queueRules(for behaviours: [ElementBehaviour], queue: UInt16) -> [ElementQueueRule] {
        let mark = ["-m", "mark", "!", "--mark", "0x\(String(ElementPipeline.injectionMark, radix: 16))"]
        let target = ["-j", "NFQUEUE", "--queue-num", "\(queue)"]
        var out: [ElementQueueRule] = []
        if behaviours.contains(where: { if case .rfc792 = $0.kind { return true } else { return false } }) {
            // Expiring packets, before routing; packets for the box itself never expire here.
            out.append(ElementQueueRule(tool: "iptables", chain: "PREROUTING",
                                        rule: ["-m", "ttl", "--ttl-lt", "2", "-m", "addrtype", "!", "--dst-type", "LOCAL"] + mark + target))
            out.append(ElementQueueRule(tool: "ip6tables", chain: "PREROUTING",
                                        rule: ["-m", "hl", "--hl-lt", "2", "-m", "addrtype", "!", "--dst-type", "LOCAL"] + mark + target))
        }
        var hooks: [Hook] = []
        for b in behaviours {
            if case .rfc792 = b.kind { continue }
            if !hooks.contains(b.hook) { hooks.append(b.hook) }
        }
        for h in hooks {
            let chain = h == .prerouting ? "PREROUTING" : "FORWARD"
            for tool in ["iptables", "ip6tables"] {
                out.append(ElementQueueRule(tool: tool, chain: chain, rule: ["-p", "tcp"] + mark + target))
            }
        }
        return out
    }
}
