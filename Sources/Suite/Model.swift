import Wire

/// How much a failed expectation matters: `fail` makes the run fail, `warn` is reported only.
public enum Severity: String, Hashable, Sendable, CaseIterable {
    case fail, warn
}

/// A TCP option, or one MPTCP subtype, named in an expectation.
public struct OptionRef: Hashable, Sendable, CustomStringConvertible {
    public var kind: UInt8
    /// For MPTCP (kind 30): the subtype, or nil for any subtype.
    public var subtype: UInt8?
    /// The name as written (for messages).
    public var name: String

    public init(kind: UInt8, subtype: UInt8? = nil, name: String) {
        self.kind = kind
        self.subtype = subtype
        self.name = name
    }

    public var description: String { name }

    /// Names of the probe language (docs/probes.md), plus RFC spellings.
    static let names: [String: (UInt8, UInt8?)] = [
        "mss": (2, nil), "ws": (3, nil), "wscale": (3, nil), "sackok": (4, nil), "sack": (5, nil), "ts": (8, nil),
        "md5": (19, nil), "ao": (29, nil), "tfo": (34, nil), "fastopen": (34, nil), "tfo-exp": (254, nil),
        "mptcp": (30, nil),
        "mpcapable": (30, 0), "mp_capable": (30, 0), "mpjoin": (30, 1), "mp_join": (30, 1), "dss": (30, 2),
        "addaddr": (30, 3), "add_addr": (30, 3), "rmaddr": (30, 4), "remove_addr": (30, 4),
        "mpprio": (30, 5), "mp_prio": (30, 5), "mpfail": (30, 6), "mp_fail": (30, 6),
        "fastclose": (30, 7), "mp_fastclose": (30, 7), "tcprst": (30, 8), "mp_tcprst": (30, 8),
        "mpexp": (30, 15), "mp_experimental": (30, 15),
    ]

    /// `mpcapable`, `mss`, `kind=30`, `30`, `30/3`, `mptcp/12`.
    public init?(parsing text: String) {
        let t = text.lowercased().trimmingCharacters(in: " ")
        if let (k, s) = Self.names[t] {
            self.init(kind: k, subtype: s, name: t)
            return
        }
        let body = t.hasPrefix("kind=") ? String(t.dropFirst(5)) : t
        let parts = body.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, let k = UInt8(parts[0]) ?? (parts[0] == "mptcp" ? 30 : nil) else { return nil }
        var sub: UInt8?
        if parts.count == 2 {
            guard k == 30, let s = UInt8(parts[1]), s < 16 else { return nil }
            sub = s
        }
        self.init(kind: k, subtype: sub, name: t)
    }

    func matches(kind k: UInt8?, subtype s: UInt8?) -> Bool {
        guard k == kind else { return false }
        return subtype == nil || s == subtype
    }
}

/// Which hops an option must reach unmodified.
public enum Reach: Hashable, Sendable, CustomStringConvertible {
    /// The last hop whose quote shows the option (default).
    case lastQuote
    /// Every quoting hop, and the destination answered.
    case destination
    /// Hop (TTL) `n`: its quote, or the last quote before it, shows the option intact.
    case hop(Template)

    public var description: String {
        switch self {
        case .lastQuote: return "the last hop that quotes it"
        case .destination: return "the destination"
        case .hop(let t): return "hop \(t.text)"
        }
    }
}

/// One expectation on the result of a probe.
public struct Expectation: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// `option: NAME` (`intact: last-quote | destination | N`).
        case optionIntact(OptionRef, reach: Reach)
        /// `no-finding: ID` (globs: `option.*`), optionally `before: N` and `option: NAME`.
        case noFinding(pattern: String, before: Template?, option: OptionRef?)
        /// `finding: ID`: the trace must report it.
        case finding(pattern: String, before: Template?, option: OptionRef?)
        /// `destination: reached | not-reached | {reached, reply, flags, option}`.
        case destination(DestinationCheck)
        /// `mss: {min: N}`: no hop sees the MSS option below N.
        case mssAtLeast(Template)
        /// `verdict: ID` (or a list of acceptable ids): the session's verdict (connect check).
        case verdict([String])
        /// `join: ID`: the outcome of the MP_JOIN subflow(s) (connect check).
        case join([String])
        /// `add-addr: ID`: the ADD_ADDR outcome (connect check).
        case addAddress([String])
    }

    public var kind: Kind
    public var severity: Severity
    /// A label from the file (`name:`), else a description made from the kind.
    public var name: String?
    public var location: SourceLocation

    public init(kind: Kind, severity: Severity = .fail, name: String? = nil, location: SourceLocation) {
        self.kind = kind
        self.severity = severity
        self.name = name
        self.location = location
    }

    /// True for expectations about a session (they need the connect check).
    public var needsSession: Bool {
        switch kind {
        case .verdict, .join, .addAddress: return true
        default: return false
        }
    }

    /// The summary with variables substituted (as reports show it).
    public func summary(with variables: Variables) -> String {
        (try? Template(summary, at: location, exactColumns: false).resolved(variables)) ?? summary
    }

    /// What the expectation says, in words.
    public var summary: String {
        if let n = name { return n }
        switch kind {
        case .optionIntact(let o, let reach): return "option \(o) reaches \(reach) unmodified"
        case .noFinding(let p, let before, let o):
            return "no finding \(p)" + (o.map { " for \($0)" } ?? "") + (before.map { " before hop \($0.text)" } ?? "")
        case .finding(let p, let before, let o):
            return "finding \(p)" + (o.map { " for \($0)" } ?? "") + (before.map { " before hop \($0.text)" } ?? "")
        case .destination(let d): return d.summary
        case .mssAtLeast(let m): return "MSS not below \(m.text)"
        case .verdict(let v): return "verdict is \(v.joined(separator: " or "))"
        case .join(let v): return "join outcome is \(v.joined(separator: " or "))"
        case .addAddress(let v): return "ADD_ADDR outcome is \(v.joined(separator: " or "))"
        }
    }
}

/// What the destination's answer must look like.
public struct DestinationCheck: Hashable, Sendable {
    public var reached: Bool?
    /// Acceptable replies (`synack`, `rst`, `tcp`).
    public var replies: [String]
    /// Flags the answer must carry (e.g. `ece` for ECN setup).
    public var flags: [String]
    /// Options the answer must carry.
    public var options: [OptionRef]
    /// Options the answer must not carry.
    public var withoutOptions: [OptionRef]

    public init(reached: Bool? = nil, replies: [String] = [], flags: [String] = [], options: [OptionRef] = [],
                withoutOptions: [OptionRef] = []) {
        self.reached = reached
        self.replies = replies
        self.flags = flags
        self.options = options
        self.withoutOptions = withoutOptions
    }

    var summary: String {
        var parts: [String] = []
        if let r = reached { parts.append(r ? "destination reached" : "destination not reached") }
        if !replies.isEmpty { parts.append("answer is \(replies.joined(separator: " or "))") }
        if !flags.isEmpty { parts.append("answer has flags \(flags.joined(separator: ","))") }
        if !options.isEmpty { parts.append("answer carries \(options.map(\.name).joined(separator: ", "))") }
        if !withoutOptions.isEmpty { parts.append("answer carries no \(withoutOptions.map(\.name).joined(separator: ", "))") }
        return parts.isEmpty ? "destination answered" : parts.joined(separator: ", ")
    }
}

/// The `trace:` check's settings (nil: the runner's defaults).
public struct TraceSettings: Hashable, Sendable {
    public var minTTL: Template?
    public var maxTTL: Template?
    public var timeout: Template?
    public var retries: Template?
    public var sequential: Bool?
    public var proxyCheck: Bool?
    public var blackholeCheck: Bool?
    public init() {}
}

/// The `connect:` check's settings, passed to the session engine as given.
public struct ConnectSettings: Hashable, Sendable {
    /// Settings by name (`join: true`, `add-addr: true`, `bytes: 10000`, `mode: kernel`...).
    public var options: [String: Template]
    public var location: SourceLocation
    public init(options: [String: Template] = [:], location: SourceLocation) {
        self.options = options
        self.location = location
    }
}

/// One probe: what to send, which checks to run, what to expect.
public struct ProbeSpec: Hashable, Sendable {
    public var name: String
    public var description: String?
    public var tags: [String]
    /// Pieces of the probe expression, joined by `/` (structured `send:` gives several pieces).
    public var send: [Template]
    public var target: Template?
    public var port: Template?
    public var vars: Variables
    /// Nil when the probe runs no trace.
    public var trace: TraceSettings?
    public var connect: ConnectSettings?
    public var expectations: [Expectation]
    public var location: SourceLocation

    public init(name: String, location: SourceLocation) {
        self.name = name
        self.location = location
        description = nil
        tags = []
        send = []
        vars = Variables()
        expectations = []
    }
}

/// A suite: probes (from files or written inline) run together under shared variables.
public struct SuiteSpec: Hashable, Sendable {
    public var name: String
    public var description: String?
    public var vars: Variables
    public var probes: [ProbeSpec]
    public var location: SourceLocation
    /// True when the file was a single probe, run as a suite of one.
    public var isSingleProbe: Bool

    public init(name: String, description: String? = nil, vars: Variables = Variables(), probes: [ProbeSpec],
                location: SourceLocation, isSingleProbe: Bool = false) {
        self.name = name
        self.description = description
        self.vars = vars
        self.probes = probes
        self.location = location
        self.isSingleProbe = isSingleProbe
    }
}
