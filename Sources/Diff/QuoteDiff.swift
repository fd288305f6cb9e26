import Wire

/// The comparison of one hop's quote with the probe as sent.
public struct QuoteDiff: Hashable, Sendable {
    public var kind: QuoteKind
    /// Bytes of the quoted datagram (IP header included).
    public var quotedBytes: Int
    /// Every difference, in packet order; expected per-hop changes (TTL, IP checksum) excluded.
    public var changes: [Change]
    /// What the quote shows about each field it covers: intact or changed.
    public var observations: [ObservationKey: Observation]

    public static let none = QuoteDiff(kind: .none, quotedBytes: 0, changes: [], observations: [:])
}

/// Compares quotes with probes. Pure: no I/O, no clock.
public enum QuoteDiffer {
    /// Diffs `quote` (what a hop quoted) against `sent` (the probe as built, whose bytes are `sentBytes`).
    public static func diff(sent: IPPacket, sentBytes: [UInt8], quote: ICMPQuote) -> QuoteDiff {
        guard let received = quote.packet else {
            return QuoteDiff(kind: .none, quotedBytes: quote.bytes.count, changes: [], observations: [:])
        }
        var d = Builder()
        compareIP(sent.ip, received.ip, &d)

        let sentTCP = sent.tcp
        var quotedTCPBytes = max(0, quote.bytes.count - received.ip.headerLength)
        // What the received packet's own length says its TCP part was.
        let receivedTCPLength = max(0, quotedTCPBytes + received.missingBytes)
        quotedTCPBytes = min(quotedTCPBytes, receivedTCPLength)

        let partial: PartialTCPHeader?
        var receivedPayload: [UInt8] = []
        switch received.transport {
        case .tcp(let s):
            partial = PartialTCPHeader(s.header, quotedBytes: quotedTCPBytes)
            receivedPayload = s.payload
        case .partialTCP(let p): partial = p
        default: partial = nil
        }

        let kind: QuoteKind
        if received.missingBytes == 0, case .tcp = received.transport { kind = .full } else if quotedTCPBytes <= 8 {
            kind = .rfc792
        } else if quotedTCPBytes <= 20 { kind = .headerOnly } else { kind = .truncated }

        if let s = sentTCP, let r = partial {
            compareTCP(s, r, &d)
            compareOptions(s.header.options, r, receivedTCPLength: receivedTCPLength, &d)
            if kind == .full {
                d.compare(.payload, .bytes(s.payload), .bytes(receivedPayload))
            } else if let off = r.dataOffset, quotedTCPBytes > Int(off) * 4, !s.payload.isEmpty {
                // The visible part of a cut payload.
                let visible = quotedTCPBytes - Int(off) * 4
                let rp = Array(quote.bytes.suffix(visible))
                d.compare(.payload, .bytes(Array(s.payload.prefix(visible))), .bytes(rp))
            }
            checkChecksum(sent: sent, sentBytes: sentBytes, received: received, quote: quote,
                          receivedTCPLength: receivedTCPLength, quotedTCPBytes: quotedTCPBytes, r, &d)
        }
        return QuoteDiff(kind: kind, quotedBytes: quote.bytes.count, changes: d.changes, observations: d.observations)
    }

    /// Accumulates changes and observations.
    struct Builder {
        var changes: [Change] = []
        var observations: [ObservationKey: Observation] = [:]

        mutating func compare(_ field: Field, _ sent: Value, _ received: Value) {
            if sent == received {
                if observations[.field(field)] == nil { observations[.field(field)] = .intact }
            } else {
                let c = Change(field: field, change: .modified, sent: sent, received: received)
                changes.append(c)
                observations[.field(field)] = .changed(c)
            }
        }

        mutating func option(_ kind: UInt8, _ subtype: UInt8?, _ change: Change?) {
            let key = ObservationKey.option(kind: kind, subtype: subtype)
            if let c = change {
                changes.append(c)
                if case .changed = observations[key] { return }
                observations[key] = .changed(c)
            } else if observations[key] == nil {
                observations[key] = .intact
            }
        }
    }

    static func compareIP(_ s: IPHeader, _ r: IPHeader, _ d: inout Builder) {
        switch (s, r) {
        case let (.v4(a), .v4(b)):
            d.compare(.ipDSCP, .number(UInt64(a.dscp)), .number(UInt64(b.dscp)))
            d.compare(.ipECN, .number(UInt64(a.ecn)), .number(UInt64(b.ecn)))
            d.compare(.ipIdentification, .number(UInt64(a.identification)), .number(UInt64(b.identification)))
            d.compare(.ipDontFragment, .bool(a.dontFragment), .bool(b.dontFragment))
            d.compare(.ipTotalLength, .number(UInt64(a.totalLength)), .number(UInt64(b.totalLength)))
            d.compare(.ipSource, .address(.v4(a.source)), .address(.v4(b.source)))
            d.compare(.ipDestination, .address(.v4(a.destination)), .address(.v4(b.destination)))
            d.compare(.ipOptions, .bytes(a.options), .bytes(b.options))
            // A router quotes the packet as it arrived: TTL 1 (some decrement first: 0).
            if b.ttl > 1 { d.compare(.ipTTL, .number(1), .number(UInt64(b.ttl))) } else { d.compare(.ipTTL, .none, .none) }
        case let (.v6(a), .v6(b)):
            d.compare(.ipv6TrafficClass, .number(UInt64(a.trafficClass)), .number(UInt64(b.trafficClass)))
            d.compare(.ipv6FlowLabel, .number(UInt64(a.flowLabel)), .number(UInt64(b.flowLabel)))
            d.compare(.ipv6PayloadLength, .number(UInt64(a.payloadLength)), .number(UInt64(b.payloadLength)))
            d.compare(.ipv6Source, .address(.v6(a.source)), .address(.v6(b.source)))
            d.compare(.ipv6Destination, .address(.v6(a.destination)), .address(.v6(b.destination)))
            if b.hopLimit > 1 { d.compare(.ipv6HopLimit, .number(1), .number(UInt64(b.hopLimit))) } else { d.compare(.ipv6HopLimit, .none, .none) }
        default:
            break
        }
    }

    static func compareTCP(_ s: TCPSegment, _ r: PartialTCPHeader, _ d: inout Builder) {
        let h = s.header
        d.compare(.tcpSourcePort, .number(UInt64(h.sourcePort)), .number(UInt64(r.sourcePort)))
        d.compare(.tcpDestinationPort, .number(UInt64(h.destinationPort)), .number(UInt64(r.destinationPort)))
        if let v = r.sequenceNumber { d.compare(.tcpSequence, .number(UInt64(h.sequenceNumber)), .number(UInt64(v))) }
        if let v = r.acknowledgmentNumber { d.compare(.tcpAcknowledgment, .number(UInt64(h.acknowledgmentNumber)), .number(UInt64(v))) }
        if let v = r.flags { d.compare(.tcpFlags, .flags(h.flags), .flags(v)) }
        if let v = r.window { d.compare(.tcpWindow, .number(UInt64(h.window)), .number(UInt64(v))) }
        if let v = r.urgentPointer { d.compare(.tcpUrgent, .number(UInt64(h.urgentPointer)), .number(UInt64(v))) }
    }

    /// An option with its offset in the option area.
    struct Placed {
        var option: TCPOption
        var offset: Int
        var length: Int
        var key: OptionKey
    }

    struct OptionKey: Hashable {
        var kind: UInt8
        var subtype: UInt8?
    }

    static func placed(_ options: [TCPOption]) -> [Placed] {
        var out: [Placed] = []
        var offset = 0
        for o in options {
            out.append(Placed(option: o, offset: offset, length: o.encodedLength,
                              key: OptionKey(kind: o.kind.rawValue, subtype: o.mptcpSubtype?.rawValue)))
            offset += o.encodedLength
        }
        return out
    }

    static func optionBytes(_ options: TCPOptions) -> [UInt8] {
        var w = ByteWriter(capacity: 40)
        try? options.write(to: &w)
        return w.bytes
    }

    /// Options are matched by position and kind: a NOP run or an EOL where a sent option stood
    /// is a strip that kept the length; the rest are aligned in order (longest common subsequence
    /// of kinds), so repeated and reordered options are handled; what could not be seen because
    /// the quote stopped short is never reported as removed.
    static func compareOptions(_ sent: TCPOptions, _ r: PartialTCPHeader, receivedTCPLength: Int, _ d: inout Builder) {
        guard let offset = r.dataOffset, let receivedOptions = r.options ?? (offset <= 5 ? TCPOptions() : nil) else {
            return // options not quoted at all
        }
        let declaredOptionBytes = max(0, Int(offset) * 4 - 20)
        let visibleOptionBytes = min(declaredOptionBytes, max(0, r.quotedBytes - 20))
        let fullyVisible = visibleOptionBytes == declaredOptionBytes
        let recvBytes = optionBytes(receivedOptions)
        var recvList = receivedOptions.options
        // An option cut by the end of the quote is not malformed on the wire: drop it.
        if !fullyVisible, case .malformed(let m)? = recvList.last, case .overrun = m.reason { recvList.removeLast() }

        let sentPlaced = placed(sent.options)
        let recvPlaced = placed(recvList)
        var sentRemaining: [Placed] = []

        for s in sentPlaced where s.key.kind > 1 {
            let end = s.offset + s.length
            if end <= recvBytes.count, end <= visibleOptionBytes {
                let region = recvBytes[s.offset..<end]
                if region.allSatisfy({ $0 == 1 }) {
                    d.option(s.key.kind, s.key.subtype, Change(field: .option(kind: s.key.kind, subtype: s.key.subtype), change: .nopped,
                                                               sent: .option(s.option), received: .bytes(Array(region))))
                    continue
                }
                if recvBytes[s.offset] == 0, recvPlaced.contains(where: { $0.offset == s.offset && $0.option == .endOfList }) {
                    d.option(s.key.kind, s.key.subtype, Change(field: .option(kind: s.key.kind, subtype: s.key.subtype), change: .eolReplaced,
                                                               sent: .option(s.option), received: .bytes(Array(region))))
                    continue
                }
            }
            sentRemaining.append(s)
        }
        let recvRemaining = recvPlaced.filter { $0.key.kind > 1 }

        // Longest common subsequence on option keys.
        let n = sentRemaining.count, m = recvRemaining.count
        var table = [[Int]](repeating: [Int](repeating: 0, count: m + 1), count: n + 1)
        if n > 0 && m > 0 {
            for i in stride(from: n - 1, through: 0, by: -1) {
                for j in stride(from: m - 1, through: 0, by: -1) {
                    table[i][j] = sentRemaining[i].key == recvRemaining[j].key
                        ? table[i + 1][j + 1] + 1 : max(table[i + 1][j], table[i][j + 1])
                }
            }
        }
        var i = 0, j = 0
        while i < n || j < m {
            if i < n, j < m, sentRemaining[i].key == recvRemaining[j].key {
                compareMatched(sentRemaining[i], recvRemaining[j], &d)
                i += 1; j += 1
            } else if i < n, j == m || table[i + 1][j] >= table[i][j + 1] {
                let s = sentRemaining[i]
                // Removed only if the quote shows where it would have been.
                if fullyVisible || s.offset + s.length <= visibleOptionBytes && j < m {
                    d.option(s.key.kind, s.key.subtype, Change(field: .option(kind: s.key.kind, subtype: s.key.subtype), change: .removed,
                                                               sent: .option(s.option), received: .none))
                }
                i += 1
            } else {
                let rr = recvRemaining[j]
                d.option(rr.key.kind, rr.key.subtype, Change(field: .option(kind: rr.key.kind, subtype: rr.key.subtype), change: .added,
                                                             sent: .none, received: .option(rr.option)))
                j += 1
            }
        }
    }

    static func compareMatched(_ s: Placed, _ r: Placed, _ d: inout Builder) {
        guard s.option != r.option else {
            d.option(s.key.kind, s.key.subtype, nil)
            return
        }
        let sf = OptionFields.of(s.option), rf = OptionFields.of(r.option)
        var any = false
        for (name, sv) in sf {
            let rv = rf.first { $0.0 == name }?.1 ?? .none
            if sv != rv {
                any = true
                d.option(s.key.kind, s.key.subtype, Change(field: .optionField(kind: s.key.kind, subtype: s.key.subtype, name: name),
                                                           change: .modified, sent: sv, received: rv))
            }
        }
        if !any {
            // Different encodings of equal fields (e.g. reserved bits, a malformed copy): the whole option changed.
            d.option(s.key.kind, s.key.subtype, Change(field: .option(kind: s.key.kind, subtype: s.key.subtype), change: .modified,
                                                       sent: .option(s.option), received: .option(r.option)))
        }
    }

    /// A checksum that changed more than the visible bytes explain reveals changes beyond a partial quote.
    static func checkChecksum(sent: IPPacket, sentBytes: [UInt8], received: IPPacket, quote: ICMPQuote,
                              receivedTCPLength: Int, quotedTCPBytes: Int, _ r: PartialTCPHeader, _ d: inout Builder) {
        guard let quotedChecksum = r.checksum else { return }
        let sentStart = sent.ip.headerLength
        let sentTCPLength = sentBytes.count - sentStart
        let recvStart = received.ip.headerLength
        let expected: UInt16
        if received.missingBytes == 0 {
            expected = Checksum.transport(source: received.ip.source, destination: received.ip.destination, protocol: 6,
                                          segment: quote.bytes, range: recvStart..<(recvStart + quotedTCPBytes), checksumFieldOffset: 16)
        } else {
            // Assume what was not quoted is as sent; possible only when the length did not change.
            guard receivedTCPLength == sentTCPLength, sentTCPLength >= quotedTCPBytes else { return }
            var combined = Array(quote.bytes[recvStart..<(recvStart + quotedTCPBytes)])
            combined += sentBytes[(sentStart + quotedTCPBytes)...]
            expected = Checksum.transport(source: received.ip.source, destination: received.ip.destination, protocol: 6,
                                          segment: combined, checksumFieldOffset: 16)
        }
        let sentChecksum = sent.tcp?.header.checksum ?? 0
        // 0x0000 and 0xffff are the same one's-complement value.
        if quotedChecksum == expected || (quotedChecksum ^ expected) == 0xffff && (expected == 0 || expected == 0xffff) {
            d.compare(.tcpChecksum, .none, .none)
        } else {
            let c = Change(field: .tcpChecksum, change: .modified, sent: .number(UInt64(sentChecksum)), received: .number(UInt64(quotedChecksum)))
            d.changes.append(c)
            d.observations[.field(.tcpChecksum)] = .changed(c)
        }
    }
}
