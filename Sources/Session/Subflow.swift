import Wire

/// TCP state of one subflow, as the crafted client keeps it.
final class Subflow {
    enum Kind: String { case initial, join }

    struct Outstanding {
        var seq: UInt32
        var length: UInt32        // sequence space (payload + SYN/FIN)
        var bytes: [UInt8]        // the packet as sent, for retransmission
        var label: String
        var sent: Double
        var retries: Int
    }

    let id: Int
    let kind: Kind
    let local: IPAddress
    let localPort: UInt16
    let remote: IPAddress
    let remotePort: UInt16
    let iss: UInt32
    var sndNxt: UInt32
    var sndUna: UInt32
    var irs: UInt32 = 0
    var rcvNxt: UInt32 = 0
    var synAcked = false
    /// How the SYN was answered (set by the dispatcher).
    var handshakeOutcome: HandshakeOutcome?
    /// Packets that acknowledged what we never sent while our SYN waited (an old connection of
    /// the same four-tuple on the server), each answered with a RST.
    var staleConnectionResets: [Int] = []
    var established = false
    var outstanding: [Outstanding] = []
    /// Out-of-order payload by sequence number.
    var pending: [UInt32: [UInt8]] = [:]
    /// In-order subflow bytes; relative sequence 1 is index 0.
    var stream: [UInt8] = []
    /// Mappings received and not yet delivered.
    var mappings: [(mapping: DSS.Mapping, fin: Bool, packet: Int)] = []
    var finReceived = false
    var finSent = false
    var reset = false
    var ipID: UInt16
    var ttl: UInt8 = 64
    /// Data-level start of subflow bytes after an infinite mapping (fallback).
    var infiniteFrom: (dsn: UInt64, ssn: UInt32)?

    init(id: Int, kind: Kind, local: IPAddress, localPort: UInt16, remote: IPAddress, remotePort: UInt16, iss: UInt32) {
        self.id = id
        self.kind = kind
        self.local = local
        self.localPort = localPort
        self.remote = remote
        self.remotePort = remotePort
        self.iss = iss
        sndNxt = iss
        sndUna = iss
        ipID = UInt16(truncatingIfNeeded: iss >> 8)
    }

    /// True for segments of this subflow coming from the peer.
    func matches(_ p: IPPacket, _ seg: TCPSegment) -> Bool {
        p.ip.source == remote && p.ip.destination == local
            && seg.header.sourcePort == remotePort && seg.header.destinationPort == localPort
    }

    /// Relative subflow sequence number of our next byte (the DSS subflow sequence number).
    var relativeSend: UInt32 { sndNxt &- iss }

    /// Whether a received mapping not yet delivered covers this relative subflow sequence number.
    func mapped(relative rel: UInt32) -> Bool {
        mappings.contains { rel &- $0.mapping.subflowSequenceNumber < UInt32($0.mapping.dataLevelLength) }
    }

    /// Builds one segment of this subflow.
    func segment(flags: TCPFlags, seq: UInt32? = nil, options: [TCPOption], payload: [UInt8] = [], ttl: UInt8? = nil) throws -> [UInt8] {
        var h = TCPHeader(sourcePort: localPort, destinationPort: remotePort, sequenceNumber: seq ?? sndNxt,
                          acknowledgmentNumber: flags.contains(.ack) ? rcvNxt : 0, flags: flags, window: 65535, options: options)
        h.window = 65535
        let ip: IPHeader
        ipID &+= 1
        switch (local, remote) {
        case let (.v4(s), .v4(d)):
            var v4 = IPv4Header(source: s, destination: d, protocol: .tcp, ttl: ttl ?? self.ttl)
            v4.identification = ipID
            v4.dontFragment = true
            ip = .v4(v4)
        case let (.v6(s), .v6(d)):
            ip = .v6(IPv6Header(source: s, destination: d, nextHeader: .tcp, hopLimit: ttl ?? self.ttl))
        default:
            throw SessionError.configuration("subflow addresses \(local) and \(remote) are of different families")
        }
        return try IPPacket(ip: ip, transport: .tcp(TCPSegment(header: h, payload: payload))).serialized(finalize: true)
    }
}

/// Sequence-number comparisons modulo 2^32.
@inline(__always) func seqGE(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) >= 0 }
@inline(__always) func seqLT(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) < 0 }
@inline(__always) func seqLE(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) <= 0 }
@inline(__always) func seqGT(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }
