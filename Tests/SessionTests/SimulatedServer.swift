import Wire
import PacketIO
import MPTCPCrypto
@testable import Session

/// A deterministic MPTCP echo server on virtual time, for engine tests without privileges.
/// It checks what the client sends (DSS checksums, HMACs) and can misbehave like a path would.
final class SimulatedServer: PacketNetwork {
    enum Behaviour {
        case mptcp
        case plain                 // no MPTCP at all
        case stripSynAck           // MP_CAPABLE overwritten with NOPs on the way back
        case noDSS                 // falls back after the SYN/ACK: never a DSS
        case v0Only                // ignores v1 SYNs, speaks v0
        case badJoinHMAC
        case mpFailOnData          // reports a checksum failure on the first data
        case silent                // nothing answers
        case staleConnection       // holds an old connection of the first four-tuple until a valid RST
    }

    /// A box on the path that overwrites DSS options with NOPs.
    enum DSSStrip {
        case none
        case serverData            // on the server's data segments only, towards the client
        case bothWays              // on every segment, both ways (the keys on MP_CAPABLE pass)
    }

    struct Conn {
        var clientPort: UInt16
        var iss: UInt32
        var sndNxt: UInt32
        var rcvNxt: UInt32
        var join: Bool
        var clientNonce: UInt32 = 0
    }

    let behaviour: Behaviour
    let server: IPAddress
    let port: UInt16
    var clock = 100.0
    var queue: [ReceivedPacket] = []
    let serverKey = MPTCPKey(rawValue: 0x1122_3344_5566_7788)
    var clientKey: MPTCPKey?
    var version: MPTCPVersion = .v1
    var conns: [UInt16: Conn] = [:]
    var checksums = false
    var received: [UInt8] = []
    var echoed = 0
    var checksumFailures = 0
    var joinHMACOK: Bool?
    var addAddrReceived = 0
    var dataFinReceived = false
    var sent: [IPPacket] = []
    /// `.staleConnection`: the old connection is still held; RSTs that ended it.
    var staleHeld = true
    var staleResets = 0
    static let staleRcvNxt: UInt32 = 0x1234_5678
    var dssStrip = DSSStrip.none
    /// The server got data without a mapping and fell back to TCP (RFC 8684 §3.7), like Linux's DssFallback.
    var fellBack = false

    init(_ behaviour: Behaviour, server: IPAddress = IPAddress("198.18.1.2")!, port: UInt16 = 80, dssStrip: DSSStrip = .none) {
        self.behaviour = behaviour
        self.dssStrip = dssStrip
        self.server = server
        self.port = port
    }

    func now() -> Double { clock }

    func receive(until deadline: Double) throws -> ReceivedPacket? {
        if let first = queue.first, first.time <= deadline {
            queue.removeFirst()
            clock = max(clock, first.time)
            return first
        }
        clock = max(clock, deadline)
        return nil
    }

    var serverIDSN: UInt64 { (try? serverKey.idsn(version)) ?? 0 }
    var clientIDSN: UInt64 { (try? clientKey?.idsn(version)) ?? nil ?? 0 }

    func send(_ bytes: [UInt8]) throws {
        let p = try IPPacket.parse(bytes)
        sent.append(p)
        guard behaviour != .silent, p.ip.destination == server, let seg = p.tcp, seg.header.destinationPort == port else { return }
        guard p.ip.ttl >= 2 else { return }   // TTL-limited copies expire before the server (no ICMP here)
        let h = seg.header, cp = h.sourcePort
        var mp = h.options.mptcp
        if dssStrip == .bothWays, !h.flags.contains(.syn) { mp.removeAll { if case .dss = $0 { return true }; return false } }
        if behaviour == .staleConnection, staleHeld {
            // RFC 5961: a SYN for the old connection gets a challenge ACK; only a RST with
            // exactly its rcv_nxt (our SEG.ACK) ends it.
            if h.flags.contains(.rst) {
                if h.sequenceNumber == Self.staleRcvNxt { staleHeld = false; staleResets += 1 }
            } else if h.flags.contains(.syn) {
                reply(cp, seq: 0x7777_0000, ack: Self.staleRcvNxt, flags: .ack, options: [])
            }
            return
        }
        if h.flags.contains(.rst) { conns[cp] = nil; return }
        if h.flags.contains(.syn) {
            var c = Conn(clientPort: cp, iss: 0x5000_0000 &+ UInt32(cp), sndNxt: 0, rcvNxt: h.sequenceNumber &+ 1, join: false)
            c.sndNxt = c.iss &+ 1
            var options: [TCPOption] = [.maximumSegmentSize(1460)]
            for m in mp {
                switch m {
                case .capable(let mpc):
                    switch behaviour {
                    case .plain: break
                    case .v0Only where mpc.version == 1: break
                    case .stripSynAck:
                        options += Array(repeating: .noOperation, count: 12)
                    default:
                        version = mpc.version == 0 ? .v0 : .v1
                        if let k = mpc.senderKey { clientKey = MPTCPKey(rawValue: k) }
                        checksums = mpc.flags & MPCapable.checksumRequired != 0
                        options.append(.mptcp(.capable(MPCapable(version: mpc.version, flags: MPCapable.hmacSHA, senderKey: serverKey.rawValue))))
                    }
                case .join(let j):
                    guard case .syn(_, let nonce) = j.stage, let ck = clientKey else { continue }
                    c.join = true
                    c.clientNonce = nonce
                    var hmac = try MPTCPHMAC.joinSynAck(version, responderKey: serverKey, initiatorKey: ck, responderNonce: 0xabcd, initiatorNonce: nonce)
                    if behaviour == .badJoinHMAC { hmac ^= 1 }
                    options.append(.mptcp(.join(MPJoin(addressID: 0, stage: .synAck(truncatedHMAC: hmac, senderNonce: 0xabcd)))))
                default: break
                }
            }
            conns[cp] = c
            reply(cp, seq: c.iss, flags: [.syn, .ack], options: options)
            return
        }
        guard var c = conns[cp] else { return }
        defer { conns[cp] = c }
        // v1: the client's key arrives on the third ACK (and again on the first data).
        if let mpc = h.options.mpCapable, let k = mpc.senderKey, mpc.receiverKey == serverKey.rawValue, behaviour != .stripSynAck {
            clientKey = MPTCPKey(rawValue: k)
            if mpc.flags & MPCapable.checksumRequired != 0 { checksums = true }
        }
        var mptcp = clientKey != nil && behaviour != .noDSS && behaviour != .plain && behaviour != .stripSynAck && !fellBack
        func dataAck() -> [TCPOption] {
            guard mptcp else { return [] }
            return [.mptcp(.dss(DSS(dataACK: clientIDSN &+ 1 &+ UInt64(received.count) &+ (dataFinReceived ? 1 : 0), dataACK64: true)))]
        }
        for m in mp {
            switch m {
            case .join(let j):
                if case .ack(let hmac) = j.stage, let ck = clientKey {
                    joinHMACOK = try MPTCPHMAC.joinAck(version, initiatorKey: ck, responderKey: serverKey, initiatorNonce: c.clientNonce, responderNonce: 0xabcd) == hmac
                    reply(cp, seq: c.sndNxt, ack: c.rcvNxt, flags: .ack, options: [])   // the fourth ACK
                    return
                }
            case .addAddress(let a) where !a.isEcho:
                addAddrReceived += 1
                let echo = AddAddress(encoding: .v1, echo: true, addressID: a.addressID, address: a.address)
                reply(cp, seq: c.sndNxt, ack: c.rcvNxt, flags: .ack, options: [.mptcp(.addAddress(echo))] + dataAck())
            case .dss(let d) where d.isDataFIN && mptcp:
                dataFinReceived = true
                // Our own DATA_FIN right after.
                let dsn = serverIDSN &+ 1 &+ UInt64(echoed)
                let csum = checksums ? Checksum.dss(dataSequenceNumber: dsn, subflowSequenceNumber: 0, dataLevelLength: 1, payload: []) : nil
                reply(cp, seq: c.sndNxt, ack: c.rcvNxt, flags: .ack, options: [.mptcp(.dss(DSS(
                    dataACK: clientIDSN &+ 1 &+ UInt64(received.count) &+ 1, dataACK64: true,
                    mapping: DSS.Mapping(dataSequenceNumber: dsn, subflowSequenceNumber: 0, dataLevelLength: 1, checksum: csum), dataFIN: true)))])
            default: break
            }
        }
        // The ACK probe: one below the window draws a duplicate ACK.
        if seg.payload.isEmpty, h.sequenceNumber == c.rcvNxt &- 1, !h.flags.contains(.fin) {
            reply(cp, seq: c.sndNxt, ack: c.rcvNxt, flags: .ack, options: dataAck())
            return
        }
        if !seg.payload.isEmpty, h.sequenceNumber == c.rcvNxt {
            // Check the client's mapping and checksum, like a kernel would.
            let mapped = mp.contains { m in
                if case .dss(let d) = m { return d.mapping != nil }
                if case .capable(let c) = m { return c.dataLevelLength != nil }
                return false
            }
            if mptcp && !mapped {
                fellBack = true
                mptcp = false
            }
            for m in mp {
                var mapping: DSS.Mapping?
                if case .dss(let d) = m { mapping = d.mapping }
                if case .capable(let mpc) = m, let len = mpc.dataLevelLength {
                    mapping = DSS.Mapping(dataSequenceNumber: clientIDSN &+ 1, subflowSequenceNumber: 1, dataLevelLength: len, checksum: mpc.checksum)
                }
                if let map = mapping, let csum = map.checksum,
                   Checksum.dss(dataSequenceNumber: map.dataSequenceNumber, subflowSequenceNumber: map.subflowSequenceNumber,
                                dataLevelLength: map.dataLevelLength, payload: seg.payload) != csum {
                    checksumFailures += 1
                }
            }
            received += seg.payload
            c.rcvNxt &+= UInt32(seg.payload.count)
            if behaviour == .mpFailOnData {
                reply(cp, seq: c.sndNxt, ack: c.rcvNxt, flags: .ack, options: [.mptcp(.fail(MPFail(dataSequenceNumber: clientIDSN &+ 1)))])
                return
            }
            // Echo with a mapping per segment.
            let dsn = serverIDSN &+ 1 &+ UInt64(echoed)
            let ssn = c.sndNxt &- c.iss
            var options = dataAck()
            if mptcp {
                let csum = checksums ? Checksum.dss(dataSequenceNumber: dsn, subflowSequenceNumber: ssn, dataLevelLength: UInt16(seg.payload.count), payload: seg.payload) : nil
                options = [.mptcp(.dss(DSS(dataACK: clientIDSN &+ 1 &+ UInt64(received.count), dataACK64: true,
                                           mapping: DSS.Mapping(dataSequenceNumber: dsn, subflowSequenceNumber: ssn, dataLevelLength: UInt16(seg.payload.count), checksum: csum))))]
            }
            reply(cp, seq: c.sndNxt, ack: c.rcvNxt, flags: [.ack, .psh], options: options, payload: seg.payload)
            c.sndNxt &+= UInt32(seg.payload.count)
            echoed += seg.payload.count
        }
        if h.flags.contains(.fin), h.sequenceNumber &+ UInt32(seg.payload.count) == c.rcvNxt {
            c.rcvNxt &+= 1
            reply(cp, seq: c.sndNxt, ack: c.rcvNxt, flags: [.fin, .ack], options: dataAck())
            c.sndNxt &+= 1
        }
    }

    func reply(_ cp: UInt16, seq: UInt32, ack: UInt32? = nil, flags: TCPFlags, options: [TCPOption], payload: [UInt8] = []) {
        let c = conns[cp]
        var options = options
        let strip = (dssStrip == .serverData && !payload.isEmpty) || (dssStrip == .bothWays && !flags.contains(.syn))
        if strip {
            options = options.flatMap { o -> [TCPOption] in
                if case .mptcp(.dss) = o { return Array(repeating: .noOperation, count: 8) }
                return [o]
            }
        }
        let h = TCPHeader(sourcePort: port, destinationPort: cp, sequenceNumber: seq,
                          acknowledgmentNumber: ack ?? c?.rcvNxt ?? 0, flags: flags, options: options)
        guard case .v4(let s) = server, let client = sent.last.map({ $0.ip.source }), case .v4(let d) = client else { return }
        let ip = IPHeader.v4(IPv4Header(source: s, destination: d, protocol: .tcp, ttl: 63))
        guard let bytes = try? IPPacket(ip: ip, transport: .tcp(TCPSegment(header: h, payload: payload))).serialized(finalize: true) else { return }
        queue.append(ReceivedPacket(bytes: bytes, time: clock + 0.001 + Double(queue.count) * 1e-6))
    }
}
