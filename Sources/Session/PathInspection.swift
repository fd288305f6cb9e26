import Wire

/// Locating a change on the path with TTL-limited copies of one segment: the copies, their marks,
/// and the matching of routers' ICMP quotes back to them. Pure; crafted mode and kernel mode share it.
///
/// Each copy carries its TTL in a mark the routers quote back: the IPv4 identification or the
/// IPv6 flow label 0x7700 + TTL. The quote's ports and sequence number tie it to the segment.
public enum PathInspection {
    static let mark = 0x7700

    /// The hops in front of the server: the SYN/ACK's sender is `initial - ttl + 1` hops away,
    /// with the initial TTL the smallest usual one (32, 64, 128, 255) not below the received TTL.
    public static func distance(receivedTTL: UInt8) -> Int {
        let ttl = Int(receivedTTL)
        let initial = [32, 64, 128, 255].first { $0 >= ttl } ?? 255
        return initial - ttl + 1
    }

    /// Copies of `packet` with TTL (hop limit) 1...min(maxTTL, 30), each marked with its TTL.
    public static func copies(of packet: IPPacket, maxTTL: Int) -> [(ttl: Int, packet: IPPacket)] {
        let top = min(maxTTL, 30)
        guard top >= 1 else { return [] }
        return (1...top).map { ttl in
            var p = packet
            switch p.ip {
            case .v4(var h): h.ttl = UInt8(ttl); h.identification = UInt16(truncatingIfNeeded: mark + ttl); p.ip = .v4(h)
            case .v6(var h): h.hopLimit = UInt8(ttl); h.flowLabel = UInt32(mark + ttl); p.ip = .v6(h)
            }
            return (ttl, p)
        }
    }

    /// The copy's TTL a quoted IP header carries in its mark, or nil when it is not one of ours.
    public static func markedTTL(_ quoted: IPHeader) -> Int? {
        switch quoted {
        case .v4(let h) where Int(h.identification) & 0xff00 == mark: return Int(h.identification & 0xff)
        case .v6(let h) where Int(h.flowLabel) & 0xfff00 == mark: return Int(h.flowLabel & 0xff)
        default: return nil
        }
    }

    /// Adds to `views` the hop view of every ICMP error in `packets` that quotes a copy of `sent`
    /// with TTL 1...top (the first quote per TTL wins). `index` is the packet's number in the record.
    /// Returns true when every hop 1...top has a view.
    @discardableResult
    public static func collect(_ sent: TCPSegment, from packets: [(index: Int, packet: IPPacket)], top: Int,
                               into views: inout [Int: HopView]) -> Bool {
        for (i, p) in packets {
            guard let (inner, quoted) = quotedTCP(p), quoted.sourcePort == sent.header.sourcePort,
                  quoted.destinationPort == sent.header.destinationPort,
                  quoted.sequenceNumber == nil || quoted.sequenceNumber == sent.header.sequenceNumber,
                  let ttl = markedTTL(inner.ip), ttl >= 1, ttl <= top, views[ttl] == nil else { continue }
            views[ttl] = HopView(ttl: ttl, router: p.ip.source, packet: i, state: state(sent: sent, quoted: quoted.options))
        }
        return views.count >= top
    }

    /// The packet and TCP header an ICMP error quotes, when it quotes TCP.
    static func quotedTCP(_ p: IPPacket) -> (IPPacket, PartialTCPHeader)? {
        guard let m = p.icmp, m.isError, let inner = m.quote?.packet else { return nil }
        switch inner.transport {
        case .tcp(let s): return (inner, PartialTCPHeader(s.header, quotedBytes: 0))
        case .partialTCP(let q): return (inner, q)
        default: return nil
        }
    }

    /// Whether `p` is an ICMP error quoting a packet of `flow`'s connection (same addresses and ports).
    public static func quotes(_ p: IPPacket, packetOf flow: IPPacket) -> Bool {
        guard let (inner, q) = quotedTCP(p), let t = flow.tcp else { return false }
        return inner.ip.source == flow.ip.source && inner.ip.destination == flow.ip.destination
            && q.sourcePort == t.header.sourcePort && q.destinationPort == t.header.destinationPort
    }

    /// The whole inspection: one view per hop 1...min(maxTTL, 30), `unknown` where no quote came.
    public static func inspection(segment: String, sent: TCPSegment, quotes: [(index: Int, packet: IPPacket)], maxTTL: Int) -> Inspection {
        let top = min(maxTTL, 30)
        guard top >= 1 else { return Inspection(segment: segment, hops: []) }
        var views: [Int: HopView] = [:]
        collect(sent, from: quotes, top: top, into: &views)
        return Inspection(segment: segment, hops: (1...top).map { views[$0] ?? HopView(ttl: $0, router: nil, packet: nil, state: .unknown) })
    }

    /// The segment's first MPTCP option (e.g. ADD_ADDR next to a DSS) is the one followed;
    /// a quote too short to hold options says nothing.
    static func state(sent: TCPSegment, quoted: TCPOptions?) -> HopView.State {
        guard let opts = quoted else { return .unknown }
        guard let s = sent.header.options.mptcp.first else { return .intact }
        if let q = opts.mptcp.first(where: { $0.subtype == s.subtype }) { return q == s ? .intact : .modified }
        return opts.longestNOPRun >= 4 ? .nopped : .removed
    }
}
