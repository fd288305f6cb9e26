import Wire

/// A finding id from the output contract (shared/contract.md): scripts match on these strings.
public struct FindingID: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    init(_ v: String) { rawValue = v }

    public static let optionRemoved = FindingID("option.removed")
    public static let optionNopped = FindingID("option.nopped")
    public static let optionEOLReplaced = FindingID("option.eol-replaced")
    public static let optionModified = FindingID("option.modified")
    public static let optionAdded = FindingID("option.added")
    public static let mssChanged = FindingID("tcp.mss.changed")
    public static let seqChanged = FindingID("tcp.seq.changed")
    public static let ackChanged = FindingID("tcp.ack.changed")
    public static let windowChanged = FindingID("tcp.window.changed")
    public static let flagsChanged = FindingID("tcp.flags.changed")
    public static let sportChanged = FindingID("tcp.sport.changed")
    public static let dportChanged = FindingID("tcp.dport.changed")
    public static let urgentChanged = FindingID("tcp.urgent.changed")
    public static let checksumUnexplained = FindingID("tcp.checksum.unexplained")
    public static let dscpChanged = FindingID("ip.dscp.changed")
    public static let ecnChanged = FindingID("ip.ecn.changed")
    public static let srcChanged = FindingID("ip.src.changed")
    public static let dstChanged = FindingID("ip.dst.changed")
    public static let idChanged = FindingID("ip.id.changed")
    public static let dfChanged = FindingID("ip.df.changed")
    public static let lengthChanged = FindingID("ip.length.changed")
    public static let ttlChanged = FindingID("ip.ttl.changed")
    public static let ipOptionsChanged = FindingID("ip.options.changed")
    public static let tclassChanged = FindingID("ipv6.tclass.changed")
    public static let flowLabelChanged = FindingID("ipv6.flowlabel.changed")
    public static let plenChanged = FindingID("ipv6.plen.changed")
    public static let payloadChanged = FindingID("payload.changed")
    public static let quotePartial = FindingID("quote.partial")
    public static let pathProxy = FindingID("path.proxy")
    public static let optionBlackhole = FindingID("path.option-blackhole")
    public static let destMPCapable = FindingID("dest.mp-capable")
    public static let destNoMPCapable = FindingID("dest.no-mp-capable")
    public static let destMPCapableEchoed = FindingID("dest.mp-capable-echoed")

    public var description: String { rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// The finding a change amounts to.
    public static func of(_ change: Change) -> FindingID {
        switch change.field {
        case .option:
            switch change.change {
            case .removed: return .optionRemoved
            case .nopped: return .optionNopped
            case .eolReplaced: return .optionEOLReplaced
            case .added: return .optionAdded
            case .modified: return .optionModified
            }
        case .optionField(let kind, _, _): return kind == TCPOptionKind.maximumSegmentSize.rawValue ? .mssChanged : .optionModified
        case .tcpSequence: return .seqChanged
        case .tcpAcknowledgment: return .ackChanged
        case .tcpWindow: return .windowChanged
        case .tcpFlags: return .flagsChanged
        case .tcpSourcePort: return .sportChanged
        case .tcpDestinationPort: return .dportChanged
        case .tcpUrgent: return .urgentChanged
        case .tcpChecksum: return .checksumUnexplained
        case .ipDSCP: return .dscpChanged
        case .ipECN: return .ecnChanged
        case .ipSource, .ipv6Source: return .srcChanged
        case .ipDestination, .ipv6Destination: return .dstChanged
        case .ipIdentification: return .idChanged
        case .ipDontFragment: return .dfChanged
        case .ipTotalLength: return .lengthChanged
        case .ipTTL, .ipv6HopLimit: return .ttlChanged
        case .ipOptions: return .ipOptionsChanged
        case .ipv6TrafficClass: return .tclassChanged
        case .ipv6FlowLabel: return .flowLabelChanged
        case .ipv6PayloadLength: return .plenChanged
        case .payload: return .payloadChanged
        }
    }
}

/// A finding: what, where first seen (`hop`), where last seen intact (`after`), and its detail.
public struct Finding: Hashable, Sendable {
    public var id: FindingID
    /// The smallest TTL whose reply shows the condition.
    public var hop: Int
    /// The largest smaller TTL whose reply shows the field intact (nil when unknown).
    public var after: Int?
    public var detail: FindingDetail

    public init(id: FindingID, hop: Int, after: Int? = nil, detail: FindingDetail = FindingDetail()) {
        self.id = id
        self.hop = hop
        self.after = after
        self.detail = detail
    }
}

/// A finding's detail; absent parts are nil.
public struct FindingDetail: Hashable, Sendable {
    public var kind: UInt8?
    public var subtype: UInt8?
    public var field: String?
    public var sent: Value?
    public var received: Value?
    public var quotedBytes: Int?
    public var version: UInt8?
    public var flags: UInt8?
    public var note: String?

    public init(kind: UInt8? = nil, subtype: UInt8? = nil, field: String? = nil, sent: Value? = nil, received: Value? = nil,
                quotedBytes: Int? = nil, version: UInt8? = nil, flags: UInt8? = nil, note: String? = nil) {
        self.kind = kind
        self.subtype = subtype
        self.field = field
        self.sent = sent
        self.received = received
        self.quotedBytes = quotedBytes
        self.version = version
        self.flags = flags
        self.note = note
    }

    init(_ c: Change) {
        switch c.field {
        case .option(let k, let s): self.init(kind: k, subtype: s, sent: c.sent, received: c.received)
        case .optionField(let k, let s, let n): self.init(kind: k, subtype: s, field: n, sent: c.sent, received: c.received)
        default: self.init(field: c.field.name, sent: c.sent, received: c.received)
        }
    }
}

/// Turns per-hop quote diffs into findings with the first hop that shows each change.
public enum FindingAggregator {
    public static func findings(hops: [(ttl: Int, diff: QuoteDiff)]) -> [Finding] {
        let ordered = hops.sorted { $0.ttl < $1.ttl }
        var out: [Finding] = []
        var seen = Set<String>()
        for (ttl, diff) in ordered {
            if diff.kind == .rfc792 || diff.kind == .headerOnly {
                out.append(Finding(id: .quotePartial, hop: ttl, detail: FindingDetail(quotedBytes: diff.quotedBytes,
                                                                                        note: diff.kind.rawValue)))
            }
            for change in diff.changes {
                let id = FindingID.of(change)
                let key = observationKey(change.field)
                let identity = "\(id.rawValue)|\(key)|\(change.field)"
                guard seen.insert(identity).inserted else { continue }
                let after = ordered.last { $0.ttl < ttl && $0.diff.observations[key] == .intact }?.ttl
                out.append(Finding(id: id, hop: ttl, after: after, detail: FindingDetail(change)))
            }
        }
        return out
    }

    static func observationKey(_ field: Field) -> ObservationKey {
        switch field {
        case .option(let k, let s), .optionField(let k, let s, _): return .option(kind: k, subtype: s)
        default: return .field(field)
        }
    }
}
