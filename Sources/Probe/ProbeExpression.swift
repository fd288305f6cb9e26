import Wire

/// A probe: the segment to send, written in the probe language.
///
/// `ip(dscp=46)/tcp(syn,dport=443)/mss(1460)/sackok/ts/ws(7)/mpcapable(v1,flags=AH)`:
/// layers and options joined by `/`, in the order they go on the wire. See docs/probes.md.
public struct ProbeExpression: Hashable, Sendable, CustomStringConvertible {
    /// IP fields set by the expression (nil: the engine's default).
    public struct IPFields: Hashable, Sendable {
        public var ttl: UInt8?
        public var dscp: UInt8?
        public var ecn: UInt8?
        public var identification: UInt16?
        public var dontFragment: Bool?
        public var flowLabel: UInt32?
        public var source: IPAddress?
        public var destination: IPAddress?
        /// `ip(...)` or `ip6(...)` was written: the probe asks for that family.
        public var family: Family?
        public enum Family: Hashable, Sendable { case v4, v6 }
    }

    /// TCP header fields set by the expression.
    public struct TCPFields: Hashable, Sendable {
        public var sourcePort: UInt16?
        public var destinationPort: UInt16?
        public var sequenceNumber: UInt32?
        public var acknowledgmentNumber: UInt32?
        public var flags: TCPFlags?
        public var window: UInt16?
        public var urgentPointer: UInt16?
    }

    /// The text as given.
    public let text: String
    public var ip = IPFields()
    public var tcp = TCPFields()
    public var options: [TCPOption] = []
    public var payload: [UInt8] = []

    /// A DSS checksum value standing for "compute it from the payload" (`dss(...,csum)`); a real
    /// checksum is 0xffff only when every summed word is zero (DSN, SSN, length and payload all 0).
    static let computeDSSChecksum: UInt16 = 0xffff

    /// What a Linux MPTCP v1 client sends in its SYN.
    public static let defaultText = "tcp(syn)/mss(1460)/sackok/ts/nop/ws(7)/mpcapable(v1)"

    public static var `default`: ProbeExpression {
        // The default text is a constant known to parse; a failure here is a programming error caught by tests.
        (try? ProbeExpression(parsing: defaultText)) ?? ProbeExpression(empty: defaultText)
    }

    private init(empty text: String) { self.text = text }

    public init(parsing text: String) throws {
        self.text = text
        let layers = try ProbeSyntax.parse(text)
        var sawTCP = false, sawIP = false
        for (index, layer) in layers.enumerated() {
            var args = Arguments(layer: layer)
            switch layer.name {
            case "ip", "ip4", "ipv4":
                guard index == 0 else { throw ProbeError("ip(...) must come first", column: layer.column) }
                sawIP = true
                // `ip(...)` with fields both families have (ttl, dscp, ecn, tos) fits either:
                // on IPv6 they go to the hop limit and traffic class. IPv4-only fields, or
                // writing ip4/ipv4, make it an IPv4 probe.
                if layer.name != "ip" { ip.family = .v4 }
                ip.ttl = try args.number("ttl", max: 255).map(UInt8.init)
                ip.dscp = try args.number("dscp", max: 63).map(UInt8.init)
                ip.ecn = try args.number("ecn", max: 3).map(UInt8.init)
                if let tos = try args.number("tos", max: 255) { ip.dscp = UInt8(tos >> 2); ip.ecn = UInt8(tos & 3) }
                ip.identification = try args.number("id", max: 0xffff).map(UInt16.init)
                if args.flag("df") { ip.dontFragment = true }
                if args.flag("nodf") { ip.dontFragment = false }
                ip.source = try args.address("src")
                ip.destination = try args.address("dst")
                if ip.identification != nil || ip.dontFragment != nil { ip.family = .v4 }
                for a in [ip.source, ip.destination].compactMap({ $0 }) { ip.family = a.isV4 ? .v4 : .v6 }
            case "ip6", "ipv6":
                guard index == 0 else { throw ProbeError("ip6(...) must come first", column: layer.column) }
                sawIP = true
                ip.family = .v6
                ip.ttl = try (args.number("hlim", max: 255) ?? args.number("ttl", max: 255)).map(UInt8.init)
                ip.dscp = try args.number("dscp", max: 63).map(UInt8.init)
                ip.ecn = try args.number("ecn", max: 3).map(UInt8.init)
                if let tc = try args.number("tclass", max: 255) { ip.dscp = UInt8(tc >> 2); ip.ecn = UInt8(tc & 3) }
                ip.flowLabel = try args.number("flowlabel", max: 0xfffff).map(UInt32.init)
                ip.source = try args.address("src")
                ip.destination = try args.address("dst")
            case "tcp":
                guard !sawTCP, options.isEmpty else { throw ProbeError("tcp(...) must come once, before the options", column: layer.column) }
                sawTCP = true
                tcp.sourcePort = try args.number("sport", max: 0xffff).map(UInt16.init)
                tcp.destinationPort = try args.number("dport", max: 0xffff).map(UInt16.init)
                tcp.sequenceNumber = try args.number("seq", max: 0xffff_ffff).map(UInt32.init)
                tcp.acknowledgmentNumber = try args.number("acknum", max: 0xffff_ffff).map(UInt32.init)
                tcp.window = try (args.number("win", max: 0xffff) ?? args.number("window", max: 0xffff)).map(UInt16.init)
                tcp.urgentPointer = try args.number("urp", max: 0xffff).map(UInt16.init)
                var flags = TCPFlags()
                let words: [(String, TCPFlags)] = [("syn", .syn), ("ack", .ack), ("fin", .fin), ("rst", .rst), ("psh", .psh),
                                                  ("urg", .urg), ("ece", .ece), ("cwr", .cwr), ("ae", .ae)]
                for (w, f) in words where args.flag(w) { flags.insert(f) }
                if let raw = try args.number("flags", max: 0xfff) { flags = TCPFlags(rawValue: UInt16(raw)) }
                tcp.flags = flags
            case "payload", "data":
                if let hex = args.take("hex") {
                    guard let b = [UInt8](hexString: hex.value) else { throw ProbeError("payload hex is not valid hex", column: hex.column) }
                    payload += b
                }
                if let len = try args.number("len", max: 65_000) {
                    payload += (0..<Int(len)).map { UInt8(ascii: "a") &+ UInt8($0 % 26) }
                }
                while let text = args.takePositional() { payload += Array(text.value.utf8) }
            default:
                guard sawTCP || index == 0 || (index == 1 && sawIP) else {
                    throw ProbeError("options come after tcp(...)", column: layer.column)
                }
                if !sawTCP { sawTCP = true; tcp.flags = .syn }
                options.append(try OptionLayer.parse(layer.name, &args))
            }
            try args.finish()
        }
        if !sawTCP { tcp.flags = .syn }
    }

    public var description: String { text }

    /// Builds the IP packet this expression describes, from `source` to `destination`, with
    /// the given defaults for fields the expression leaves open. Checksums and lengths are set.
    public func packet(source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16,
                       sequenceNumber: UInt32, ttl: UInt8 = 64, identification: UInt16 = 0,
                       timestampValue: UInt32? = nil) throws -> IPPacket {
        var opts = options
        for (i, o) in opts.enumerated() {
            if case .mptcp(.dss(var d)) = o, var m = d.mapping, m.checksum == Self.computeDSSChecksum {
                m.checksum = Checksum.dss(dataSequenceNumber: m.dataSequenceNumber, subflowSequenceNumber: m.subflowSequenceNumber,
                                          dataLevelLength: m.dataLevelLength, payload: payload)
                d.mapping = m
                opts[i] = .mptcp(.dss(d))
            }
        }
        if let tsv = timestampValue {
            for (i, o) in opts.enumerated() {
                if case .timestamps(let v, let e) = o, v == 0 { opts[i] = .timestamps(value: tsv, echoReply: e) }
            }
        }
        let header = TCPHeader(sourcePort: tcp.sourcePort ?? sourcePort, destinationPort: tcp.destinationPort ?? destinationPort,
                               sequenceNumber: tcp.sequenceNumber ?? sequenceNumber,
                               acknowledgmentNumber: tcp.acknowledgmentNumber ?? 0, flags: tcp.flags ?? .syn,
                               window: tcp.window ?? 64240, options: opts)
        var seg = TCPSegment(header: header, payload: payload)
        seg.header.urgentPointer = tcp.urgentPointer ?? 0
        let src = ip.source ?? source, dst = ip.destination ?? destination
        let ipHeader: IPHeader
        switch (src, dst) {
        case let (.v4(s), .v4(d)):
            guard ip.family != .v6 else { throw ProbeError("ip6(...) probe for an IPv4 target", column: 1) }
            var h = IPv4Header(source: s, destination: d, protocol: .tcp, ttl: ip.ttl ?? ttl)
            h.dscp = ip.dscp ?? 0
            h.ecn = ip.ecn ?? 0
            h.identification = ip.identification ?? identification
            h.dontFragment = ip.dontFragment ?? true
            ipHeader = .v4(h)
        case let (.v6(s), .v6(d)):
            guard ip.family != .v4 else {
                throw ProbeError("IPv4 probe (ip4(...), or ip(...) with id, df/nodf or an IPv4 address) for an IPv6 target", column: 1)
            }
            var h = IPv6Header(source: s, destination: d, nextHeader: .tcp, hopLimit: ip.ttl ?? ttl)
            h.trafficClass = (ip.dscp ?? 0) << 2 | (ip.ecn ?? 0)
            h.flowLabel = ip.flowLabel ?? 0
            ipHeader = .v6(h)
        default:
            throw ProbeError("source \(src) and destination \(dst) are of different families", column: 1)
        }
        // Finalizing validates the option budget and field widths, and sets lengths and checksums.
        return try IPPacket(ip: ipHeader, transport: .tcp(seg)).finalized()
    }

    /// The same probe without options of `kind` (and `subtype`, for MPTCP): the control probe of
    /// an option-blackhole check.
    public func removing(kind: UInt8, subtype: UInt8? = nil) -> ProbeExpression {
        var copy = self
        copy.options.removeAll { o in
            o.kind.rawValue == kind && (subtype == nil || o.mptcpSubtype?.rawValue == subtype)
        }
        return copy
    }
}

/// Arguments of one layer, consumed as they are interpreted so leftovers can be reported.
struct Arguments {
    let layer: RawLayer
    private var remaining: [RawArgument]

    init(layer: RawLayer) {
        self.layer = layer
        remaining = layer.arguments
    }

    mutating func take(_ key: String) -> RawArgument? {
        guard let i = remaining.firstIndex(where: { $0.key == key }) else { return nil }
        return remaining.remove(at: i)
    }

    /// A bare word such as `syn` or `v1`.
    mutating func flag(_ word: String) -> Bool {
        guard let i = remaining.firstIndex(where: { $0.key == nil && $0.value.lowercased() == word }) else { return false }
        remaining.remove(at: i)
        return true
    }

    mutating func takePositional() -> RawArgument? {
        guard let i = remaining.firstIndex(where: { $0.key == nil }) else { return nil }
        return remaining.remove(at: i)
    }

    mutating func number(_ key: String, max: UInt64) throws -> UInt64? {
        guard let a = take(key) else { return nil }
        return try Self.number(a, max: max, name: key, layer: layer.name)
    }

    /// The next bare value as a number (an error at its column when it is not one).
    mutating func positionalNumber(max: UInt64, name: String) throws -> UInt64? {
        guard let a = takePositional() else { return nil }
        return try Self.number(a, max: max, name: name, layer: layer.name)
    }

    mutating func bytes(_ key: String) throws -> [UInt8]? {
        guard let a = take(key) else { return nil }
        guard let b = [UInt8](hexString: a.value) else {
            throw ProbeError("\(layer.name)(\(key)=...) is not valid hex: \(a.value)", column: a.column)
        }
        return b
    }

    mutating func address(_ key: String) throws -> IPAddress? {
        guard let a = take(key) else { return nil }
        guard let addr = IPAddress(a.value) else {
            throw ProbeError("\(layer.name)(\(key)=...) is not an IPv4 or IPv6 address: \(a.value)", column: a.column)
        }
        return addr
    }

    static func parseNumber(_ s: String) -> UInt64? {
        let t = s.lowercased()
        if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16) }
        return UInt64(t)
    }

    static func number(_ a: RawArgument, max: UInt64, name: String, layer: String) throws -> UInt64 {
        guard let v = parseNumber(a.value) else {
            throw ProbeError("\(layer)(\(name)=...) expects a number (decimal or 0x hex), not \"\(a.value)\"", column: a.column)
        }
        guard v <= max else { throw ProbeError("\(layer)(\(name)=\(a.value)) is larger than \(max)", column: a.column) }
        return v
    }

    /// Reports the first argument nobody consumed.
    func finish() throws {
        if let a = remaining.first {
            let what = a.key.map { "\($0)=" } ?? a.value
            throw ProbeError("\(layer.name)(...) does not take \"\(what)\"", column: a.column)
        }
    }
}
