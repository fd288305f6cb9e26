import Wire

/// One packet of a session, as sent or captured, numbered in order (evidence refers to `index`).
public struct RecordedPacket: Sendable {
    public enum Direction: String, Sendable { case out, `in` }
    public var index: Int
    public var time: Double
    public var direction: Direction
    /// 0 initial subflow, 1 join, nil for other flows (retries, path inspection, ICMP).
    public var subflow: Int?
    public var packet: IPPacket
    /// What the engine sent it as or took it for ("syn", "third-ack", "data", "inspect ttl 2", ...).
    public var label: String
}

/// One piece of evidence: a packet and why it matters.
public struct Evidence: Sendable, Hashable {
    public var packet: Int?
    public var direction: RecordedPacket.Direction?
    public var why: String
    public init(packet: Int?, direction: RecordedPacket.Direction? = nil, why: String) {
        self.packet = packet
        self.direction = direction
        self.why = why
    }
}

/// What one TTL-limited copy of a session segment showed: is the MPTCP option still there at hop `ttl`?
public struct HopView: Sendable, Hashable {
    public enum State: String, Sendable { case intact, removed, nopped, modified, unknown }
    public var ttl: Int
    public var router: IPAddress?
    public var packet: Int?
    public var state: State
}

/// Path inspection of one segment kind ("syn", "third-ack", "data").
public struct Inspection: Sendable, Hashable {
    public var segment: String
    public var hops: [HopView]
    /// The first hop whose quote shows the option gone, with the last hop that showed it intact.
    public var firstChanged: HopView? { hops.first { $0.state == .removed || $0.state == .nopped || $0.state == .modified } }
    public var lastIntactBefore: HopView? {
        guard let c = firstChanged else { return nil }
        return hops.last { $0.ttl < c.ttl && $0.state == .intact }
    }
}

/// How the first SYN exchange ended.
public enum HandshakeOutcome: Sendable, Hashable {
    case synAck(packet: Int)
    case reset(packet: Int)
    case unreachable(packet: Int, code: UInt8)
    case noAnswer
}

/// The facts the engine observed; the classifier turns them into verdicts.
public struct SessionFacts: Sendable {
    // Handshake
    public var versionSent: UInt8 = 1
    public var versionUsed: UInt8?
    public var synPackets: [Int] = []
    public var handshake: HandshakeOutcome = .noAnswer
    public var synAckMPCapable: MPCapable?
    /// Longest run of NOPs in the SYN/ACK's options (stripping that keeps the length leaves one).
    public var synAckNOPRun = 0
    public var synAckEchoed = false
    public var synAckFlagsProblem: String?
    public var plainSYN: HandshakeOutcome?
    public var v0Retry: HandshakeOutcome?
    public var v0RetryMPCapable: MPCapable?
    public var checksums = false
    public var localKey: UInt64 = 0
    public var remoteKey: UInt64?
    public var pathDistance: Int?
    /// The ICMP echo at the SYN/ACK's distance expired on the way: a box answered for the server.
    public var proxyHop: Int?
    public var proxyEvidence: Int?
    public var thirdAckPacket: Int?

    // The server's state after the third ACK, seen through its answer to an out-of-window ACK.
    public var ackProbeReply: Int?
    public var ackProbeReplyHasDSS = false
    public var ackProbeReplyNOPRun = 0

    // Data
    public var bytesSent = 0
    public var bytesAckedSubflow = 0
    public var bytesAckedDataLevel = 0
    public var firstServerDSS: Int?
    /// A server ACK covering our data that carried no DSS while no DSS had been seen.
    public var dataAckedWithoutDSS: Int?
    /// A server segment after the handshake whose options hold a NOP run where an MPTCP option would be.
    public var serverNOPRun: Int?
    public var serverDataWithoutDSS: Int?
    /// Server data without a mapping after the server's DSS had been seen (RFC 8684 §3.7: on the
    /// only subflow the client falls back to TCP).
    public var serverDataWithoutMapping: Int?
    /// After the ACK probe, before the close: the first server segment with neither an MPTCP
    /// option nor a NOP run (a server that fell back sends such plain segments).
    public var serverPlainSegment: Int?
    public var invalidDataAck: Int?
    public var mpFail: Int?
    public var infiniteMapping: Int?
    public var checksumErrors: [Int] = []
    public var mptcpReset: (packet: Int, reason: UInt8, subflow: Int)?
    public var resets: [Int] = []
    public var fellBack = false
    public var received: [UInt8] = []
    public var receivedMappings = 0
    public var echoMatches: Bool?
    public var dataFinAcked = false
    public var serverDataFin: Int?
    public var subflowClosed = false
    public var dataTimedOut = false
    public var inspections: [Inspection] = []

    // MP_JOIN
    public var joinAttempted = false
    public var joinSynPackets: [Int] = []
    public var joinOutcome: HandshakeOutcome?
    public var joinSynAckHasJoin = false
    public var joinSynAckNOPRun = 0
    public var joinHMACValid: Bool?
    public var joinFourthAck: Int?
    public var joinReset: (packet: Int, reason: UInt8?)?
    public var joinBytesSent = 0
    public var joinBytesAcked = 0

    // ADD_ADDR
    public var addAddrSent: [Int] = []
    public var addAddrEcho: Int?
    public var serverAddAddr: [(packet: Int, id: UInt8, address: IPAddress, hmacValid: Bool?)] = []
    public var serverRemoveAddr: [Int] = []
    public var prioritySent: Int?
    public var fastCloseSent: Int?
    public var fastCloseAnswered: Int?

    public init() {}
}

/// A finished session: configuration, every packet, and the facts.
public struct SessionRecord: Sendable {
    public var configuration: SessionConfiguration
    public var packets: [RecordedPacket] = []
    public var facts = SessionFacts()
    public var started: Double = 0
    public var duration: Double = 0

    public init(configuration: SessionConfiguration) { self.configuration = configuration }
}

extension TCPOptions {
    /// The longest run of consecutive NOPs.
    var longestNOPRun: Int {
        var best = 0, run = 0
        for o in options {
            if case .noOperation = o { run += 1; best = max(best, run) } else { run = 0 }
        }
        return best
    }

    var mptcp: [MPTCPOption] {
        options.compactMap { if case .mptcp(let m) = $0 { return m } else { return nil } }
    }

    var mpCapable: MPCapable? {
        for m in mptcp { if case .capable(let c) = m { return c } }
        return nil
    }
}
