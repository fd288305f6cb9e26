import Wire

/// How much of the probe an ICMP error quoted.
public enum QuoteKind: String, Hashable, Sendable, Codable {
    /// The whole packet as the router received it.
    case full
    /// IP header and at most 8 bytes of TCP (ports and sequence number): RFC 792.
    case rfc792
    /// IP header and the fixed 20-byte TCP header, no options.
    case headerOnly = "header-only"
    /// More than the fixed header but not the whole packet.
    case truncated
    case none
}

/// What happened to a field or option.
public enum ChangeKind: String, Hashable, Sendable, Codable {
    case removed
    /// Overwritten with NOP bytes (length kept): what TCPOPTSTRIP and nft `reset tcp option` do.
    case nopped
    case eolReplaced = "eol-replaced"
    case modified
    case added
}

/// Which part of the packet a change is in.
public enum Layer: String, Hashable, Sendable, Codable {
    case ip, ipv6, tcp, payload
}

/// A header field, an option, or a field inside an option.
public enum Field: Hashable, Sendable {
    case ipDSCP, ipECN, ipIdentification, ipDontFragment, ipTotalLength, ipTTL, ipSource, ipDestination, ipOptions
    case ipv6TrafficClass, ipv6FlowLabel, ipv6PayloadLength, ipv6HopLimit, ipv6Source, ipv6Destination
    case tcpSourcePort, tcpDestinationPort, tcpSequence, tcpAcknowledgment, tcpFlags, tcpWindow, tcpUrgent
    /// The TCP checksum changed more than the visible changes explain.
    case tcpChecksum
    /// An option as a whole (presence).
    case option(kind: UInt8, subtype: UInt8?)
    /// A named field inside an option (e.g. MSS `value`, MP_CAPABLE `flags`).
    case optionField(kind: UInt8, subtype: UInt8?, name: String)
    case payload

    public var layer: Layer {
        switch self {
        case .ipDSCP, .ipECN, .ipIdentification, .ipDontFragment, .ipTotalLength, .ipTTL, .ipSource, .ipDestination, .ipOptions:
            return .ip
        case .ipv6TrafficClass, .ipv6FlowLabel, .ipv6PayloadLength, .ipv6HopLimit, .ipv6Source, .ipv6Destination:
            return .ipv6
        case .payload: return .payload
        default: return .tcp
        }
    }

    /// The field's name in output (`field` of a change in the JSON contract).
    public var name: String {
        switch self {
        case .ipDSCP: return "dscp"
        case .ipECN: return "ecn"
        case .ipIdentification: return "id"
        case .ipDontFragment: return "df"
        case .ipTotalLength: return "length"
        case .ipTTL: return "ttl"
        case .ipSource: return "src"
        case .ipDestination: return "dst"
        case .ipOptions: return "options"
        case .ipv6TrafficClass: return "tclass"
        case .ipv6FlowLabel: return "flowlabel"
        case .ipv6PayloadLength: return "plen"
        case .ipv6HopLimit: return "hlim"
        case .ipv6Source: return "src"
        case .ipv6Destination: return "dst"
        case .tcpSourcePort: return "sport"
        case .tcpDestinationPort: return "dport"
        case .tcpSequence: return "seq"
        case .tcpAcknowledgment: return "ack"
        case .tcpFlags: return "flags"
        case .tcpWindow: return "window"
        case .tcpUrgent: return "urgent"
        case .tcpChecksum: return "checksum"
        case .option: return "option"
        case .optionField(_, _, let n): return n
        case .payload: return "payload"
        }
    }
}

/// A value as compared; rendering is the output layer's job.
public enum Value: Hashable, Sendable {
    case none
    case number(UInt64)
    case bool(Bool)
    case bytes([UInt8])
    case address(IPAddress)
    case flags(TCPFlags)
    case option(TCPOption)
}

/// One difference between what was sent and what a hop quoted.
public struct Change: Hashable, Sendable {
    public var field: Field
    public var change: ChangeKind
    public var sent: Value
    public var received: Value

    public init(field: Field, change: ChangeKind, sent: Value, received: Value) {
        self.field = field
        self.change = change
        self.sent = sent
        self.received = received
    }

    public var layer: Layer { field.layer }
}

/// What one quote says about one field: intact, or changed.
public enum Observation: Hashable, Sendable {
    case intact
    case changed(Change)
}

/// The key under which observations of the same thing across hops are compared: the field,
/// with option fields folded into their option (an option is intact only if all of it is).
public enum ObservationKey: Hashable, Sendable {
    case field(Field)
    case option(kind: UInt8, subtype: UInt8?)
}
