import Wire
import Diff

/// What came back for one TTL.
public enum ReplyKind: String, Hashable, Sendable {
    case timeExceeded = "time-exceeded"
    case unreachable
    case packetTooBig = "packet-too-big"
    case parameterProblem = "parameter-problem"
    case synack
    case rst
    /// Another TCP segment from the target (e.g. a plain ACK).
    case tcp
    case echoReply = "echo-reply"
    case none
}

/// One hop of the trace.
public struct HopResult: Sendable {
    public var ttl: Int
    /// Probes sent at this TTL (tries).
    public var probes: Int
    public var reply: ReplyKind
    public var address: IPAddress?
    public var rttMilliseconds: Double?
    public var icmpType: UInt8?
    public var icmpCode: UInt8?
    /// The quote compared with the probe (ICMP errors only).
    public var diff: QuoteDiff?
    public var mpls: [MPLSLabelStackEntry]
    /// The TCP answer (SYN/ACK, RST) when this TTL reached a TCP endpoint.
    public var tcpReply: TCPSegment?
    /// How the reply was tied to this TTL ("sequence", "ip-id", "ack", "order").
    public var matchedBy: String?

    public init(ttl: Int) {
        self.ttl = ttl
        probes = 0
        reply = .none
        mpls = []
    }
}

/// The destination's answer.
public struct DestinationResult: Sendable {
    public var reached: Bool
    public var reply: ReplyKind
    public var ttl: Int?
    public var address: IPAddress?
    public var options: [TCPOption]
}

/// Why the trace stopped.
public enum StopReason: String, Sendable {
    /// The destination answered and every earlier TTL was resolved.
    case completed
    /// An ICMP unreachable ended the path.
    case unreachable
    /// Time ran out with TTLs unanswered.
    case timeout
    /// The whole TTL range was used without reaching the destination.
    case maxTTL = "max-ttl"
}

/// A complete trace.
public struct TraceResult: Sendable {
    public var target: IPAddress
    public var port: UInt16
    public var probeText: String
    /// The probe as sent at the first TTL (identity fields as for that TTL).
    public var sent: IPPacket
    public var hops: [HopResult]
    public var destination: DestinationResult
    public var findings: [Finding]
    public var stopReason: StopReason
    public var sequential: Bool
    public var durationSeconds: Double
    public var probesSent: Int

    public var family: String {
        if case .v4 = target { return "ipv4" }
        return "ipv6"
    }
}
