import Wire
import PacketIO

/// A deterministic path for engine tests: virtual time, routers that quote like Linux or RFC 792,
/// boxes that rewrite, and a server. No privileges, no real network.
final class SimulatedPath: PacketNetwork {
    enum Hop {
        case router                 // RFC 1812: quotes the whole packet
        case rfc792                 // quotes IP header + 8 bytes
        case silent                 // no ICMP
        case stripMPTCP             // forward hook: overwrites MPTCP options with NOPs
        case clampMSS(UInt16)       // forward hook
        case proxy                  // terminates TCP: answers SYNs itself, without MP_CAPABLE
        case dropOption(UInt8)      // drops segments carrying the option kind
        case dropFirst(Int)         // drops everything until it has seen this many packets (a transient outage)
    }

    enum Server { case mptcp, plain, echo }

    let client: IPAddress
    let hops: [Hop]
    let server: Server
    let hopLatency: Double
    private(set) var clock: Double = 1000
    private var pending: [ReceivedPacket] = []
    private(set) var sentCount = 0
    private var seenByHop: [Int: Int] = [:]

    init(client: IPAddress, hops: [Hop], server: Server = .mptcp, hopLatency: Double = 0.001) {
        self.client = client
        self.hops = hops
        self.server = server
        self.hopLatency = hopLatency
    }

    func routerAddress(_ i: Int) -> IPAddress {
        if case .v4 = client { return .v4(IPv4Address(198, 18, UInt8(i + 1), 1)) }
        return IPAddress("2001:db8:\(i + 1)::1")!
    }

    func now() -> Double { clock }

    func receive(until deadline: Double) throws -> ReceivedPacket? {
        pending.sort { $0.time < $1.time }
        if let first = pending.first, first.time <= deadline {
            pending.removeFirst()
            clock = max(clock, first.time)
            return first
        }
        clock = max(clock, deadline)
        return nil
    }

    func send(_ bytes: [UInt8]) throws {
        sentCount += 1
        var packet = try IPPacket.parse(bytes)
        let ttl = Int(packet.ip.ttl)
        for (i, hop) in hops.enumerated() {
            let distance = i + 1
            let replyTime = clock + 2 * Double(distance) * hopLatency
            if case .proxy = hop, case .tcp(let seg) = packet.transport, seg.header.flags.contains(.syn) {
                reply(tcpAnswer(to: packet, seg, mpc: nil), at: replyTime)
                return
            }
            if case .dropFirst(let n) = hop {
                seenByHop[i, default: 0] += 1
                if seenByHop[i]! <= n { return }
            }
            if case .dropOption(let k) = hop, let seg = packet.tcp, seg.header.options.options.contains(where: { $0.kind.rawValue == k }) {
                return
            }
            if distance == ttl {
                switch hop {
                case .silent: return
                case .rfc792: reply(icmp(from: routerAddress(i), quoting: try asArrived(packet), cut: 8), at: replyTime)
                default: reply(icmp(from: routerAddress(i), quoting: try asArrived(packet), cut: nil), at: replyTime)
                }
                return
            }
            // Forward-hook rewrites happen after the TTL check.
            switch hop {
            case .stripMPTCP:
                if case .tcp(var seg) = packet.transport {
                    seg.header.options.options = seg.header.options.options.flatMap { o -> [TCPOption] in
                        o.kind == .mptcp ? Array(repeating: .noOperation, count: o.encodedLength) : [o]
                    }
                    packet.transport = .tcp(seg)
                }
            case .clampMSS(let mss):
                if case .tcp(var seg) = packet.transport {
                    seg.header.options.options = seg.header.options.options.map { o in
                        if case .maximumSegmentSize(let v) = o, v > mss { return .maximumSegmentSize(mss) }
                        return o
                    }
                    packet.transport = .tcp(seg)
                }
            default: break
            }
            packet = try decrementTTL(packet)
        }
        // The server, one hop past the last router.
        let distance = hops.count + 1
        guard ttl >= distance else { return }
        let replyTime = clock + 2 * Double(distance) * hopLatency
        switch packet.transport {
        case .tcp(let seg):
            let theirs = seg.header.options.options.compactMap { o -> MPCapable? in
                if case .mptcp(.capable(let c)) = o { return c }
                return nil
            }.first
            var mpc: MPCapable?
            switch server {
            case .mptcp where theirs != nil: mpc = MPCapable(version: 1, flags: 0x01, senderKey: 0x1122_3344_5566_7788)
            case .echo: mpc = theirs
            default: mpc = nil
            }
            reply(tcpAnswer(to: packet, seg, mpc: mpc), at: replyTime)
        case .icmp(let m) where m.type == ICMPv4Type.echoRequest || m.type == ICMPv6Type.echoRequest:
            let reply = ICMPMessage(family: m.family, type: m.family == .v4 ? ICMPv4Type.echoReply : ICMPv6Type.echoReply,
                                    code: 0, rest: m.rest, body: m.body)
            self.reply(try IPPacket(ip: swapped(packet.ip, proto: m.family == .v4 ? .icmp : .icmpv6), transport: .icmp(reply))
                .serialized(finalize: true), at: replyTime)
        default: return
        }
    }

    func reply(_ bytes: [UInt8], at time: Double) { pending.append(ReceivedPacket(bytes: bytes, time: time)) }

    func decrementTTL(_ p: IPPacket) throws -> IPPacket {
        var p = p
        switch p.ip {
        case .v4(var h): h.ttl -= 1; p.ip = .v4(h)
        case .v6(var h): h.hopLimit -= 1; p.ip = .v6(h)
        }
        return try p.finalized()
    }

    func asArrived(_ p: IPPacket) throws -> [UInt8] { try p.serialized(finalize: true) }

    func swapped(_ ip: IPHeader, proto: IPProtocol) -> IPHeader {
        switch ip {
        case .v4(let h): return .v4(IPv4Header(source: h.destination, destination: h.source, protocol: proto))
        case .v6(let h): return .v6(IPv6Header(source: h.destination, destination: h.source, nextHeader: proto))
        }
    }

    func icmp(from router: IPAddress, quoting probe: [UInt8], cut: Int?) -> [UInt8] {
        let ipLen = probe.first.map { $0 >> 4 == 4 ? Int($0 & 0xf) * 4 : 40 } ?? 20
        let quote = cut.map { Array(probe.prefix(ipLen + $0)) } ?? probe
        switch (router, client) {
        case let (.v4(r), .v4(c)):
            let m = ICMPMessage.error(family: .v4, type: ICMPv4Type.timeExceeded, code: 0, quoting: quote)
            return (try? IPPacket(ip: .v4(IPv4Header(source: r, destination: c, protocol: .icmp)), transport: .icmp(m)).serialized(finalize: true)) ?? []
        case let (.v6(r), .v6(c)):
            let m = ICMPMessage.error(family: .v6, type: ICMPv6Type.timeExceeded, code: 0, quoting: quote)
            return (try? IPPacket(ip: .v6(IPv6Header(source: r, destination: c, nextHeader: .icmpv6)), transport: .icmp(m)).serialized(finalize: true)) ?? []
        default: return []
        }
    }

    func tcpAnswer(to packet: IPPacket, _ seg: TCPSegment, mpc: MPCapable?) -> [UInt8] {
        var options: [TCPOption] = [.maximumSegmentSize(1460)]
        if let m = mpc { options.append(.mptcp(.capable(m))) }
        let h = TCPHeader(sourcePort: seg.header.destinationPort, destinationPort: seg.header.sourcePort, sequenceNumber: 777,
                          acknowledgmentNumber: seg.header.sequenceNumber &+ 1, flags: [.syn, .ack], window: 65535, options: options)
        return (try? IPPacket(ip: swapped(packet.ip, proto: .tcp), transport: .tcp(TCPSegment(header: h))).serialized(finalize: true)) ?? []
    }
}
