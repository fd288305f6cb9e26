import Wire
import PacketIO

/// Many targets behind a two-router path, in virtual time: what happens to a probe depends on
/// its destination's third octet, so one fake network holds every kind of target at once.
///   x.x.1.x  MPTCP server            x.x.2.x  router 1 overwrites MP_CAPABLE with NOPs (forward)
///   x.x.3.x  plain TCP server        x.x.4.x  closed port (RST)
///   x.x.5.x  SYNs with MP_CAPABLE dropped at router 2 (blackhole)
///   x.x.6.x  router 2 answers unreachable      other: silent
final class SimulatedNetwork: PacketNetwork {
    let client: IPAddress
    let hopLatency = 0.001
    private(set) var clock: Double = 1000
    private var pending: [ReceivedPacket] = []
    private(set) var sendTimes: [Double] = []
    /// The exact behaviour of every target, for the tests' ground truth.
    static func expectedVerdict(_ a: IPAddress) -> String {
        switch a.bytes[2] {
        case 1: return "mptcp"
        case 2: return "fallback.syn-stripped"
        case 3: return "fallback.not-mptcp-server"
        case 4: return "refused"
        case 5: return "fallback.syn-dropped"
        case 6: return "unreachable"
        default: return "timeout"
        }
    }

    init(client: IPAddress) { self.client = client }

    func now() -> Double { clock }

    func receive(until deadline: Double) throws -> ReceivedPacket? {
        if let first = pending.first, first.time <= deadline {
            let p = pending.removeFirst()
            clock = max(clock, p.time)
            return p
        }
        clock = max(clock, deadline)
        return nil
    }

    func router(_ i: Int) -> IPAddress { .v4(IPv4Address(198, 19, 0, UInt8(i))) }

    func send(_ bytes: [UInt8]) throws {
        sendTimes.append(clock)
        var packet = try IPPacket.parse(bytes)
        let kind = packet.ip.destination.bytes[2]
        let ttl = Int(packet.ip.ttl)
        for hop in 1...2 {
            let t = clock + 2 * Double(hop) * hopLatency
            if hop == 2, kind == 5, let seg = packet.tcp, seg.header.options.options.contains(where: { $0.kind == .mptcp }) { return }
            if hop == 2, kind == 6, packet.tcp != nil {
                reply(icmp(from: router(hop), type: ICMPv4Type.destinationUnreachable, code: 1, quoting: try packet.serialized(finalize: true)), at: t)
                return
            }
            if ttl == hop {
                reply(icmp(from: router(hop), type: ICMPv4Type.timeExceeded, code: 0, quoting: try packet.serialized(finalize: true)), at: t)
                return
            }
            if hop == 1, kind == 2, case .tcp(var seg) = packet.transport {
                seg.header.options.options = seg.header.options.options.flatMap { o -> [TCPOption] in
                    o.kind == .mptcp ? Array(repeating: .noOperation, count: o.encodedLength) : [o]
                }
                packet.transport = .tcp(seg)
            }
            if case .v4(var h) = packet.ip { h.ttl -= 1; packet.ip = .v4(h) }
            packet = try packet.finalized()
        }
        guard ttl >= 3, (1...6).contains(kind) else { return }
        let t = clock + 6 * hopLatency
        switch packet.transport {
        case .tcp(let seg):
            let mpc = seg.header.options.options.contains { $0.kind == .mptcp }
            let h = TCPHeader(sourcePort: seg.header.destinationPort, destinationPort: seg.header.sourcePort, sequenceNumber: 777,
                              acknowledgmentNumber: seg.header.sequenceNumber &+ 1, flags: kind == 4 ? [.rst, .ack] : [.syn, .ack], window: 65535,
                              options: kind == 4 ? [] : [.maximumSegmentSize(1460)] + (kind == 1 && mpc ? [.mptcp(.capable(MPCapable(version: 1, flags: 1, senderKey: 0x1122_3344_5566_7788)))] : []))
            reply(try IPPacket(ip: .v4(IPv4Header(source: packet.ip.destination.v4!, destination: packet.ip.source.v4!, protocol: .tcp)),
                               transport: .tcp(TCPSegment(header: h))).serialized(finalize: true), at: t)
        case .icmp(let m) where m.type == ICMPv4Type.echoRequest:
            let r = ICMPMessage(family: .v4, type: ICMPv4Type.echoReply, code: 0, rest: m.rest, body: m.body)
            reply(try IPPacket(ip: .v4(IPv4Header(source: packet.ip.destination.v4!, destination: packet.ip.source.v4!, protocol: .icmp)),
                               transport: .icmp(r)).serialized(finalize: true), at: t)
        default: return
        }
    }

    /// Keeps `pending` sorted by time (FIFO among equal times).
    func reply(_ bytes: [UInt8], at time: Double) {
        var lo = 0, hi = pending.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pending[mid].time <= time { lo = mid + 1 } else { hi = mid }
        }
        pending.insert(ReceivedPacket(bytes: bytes, time: time), at: lo)
    }

    func icmp(from r: IPAddress, type: UInt8, code: UInt8, quoting q: [UInt8]) -> [UInt8] {
        let m = ICMPMessage.error(family: .v4, type: type, code: code, quoting: q)
        return (try? IPPacket(ip: .v4(IPv4Header(source: r.v4!, destination: client.v4!, protocol: .icmp)), transport: .icmp(m)).serialized(finalize: true)) ?? []
    }
}

extension IPAddress {
    var v4: IPv4Address? { if case .v4(let a) = self { return a }; return nil }
}
