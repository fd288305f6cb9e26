// The element's packet transformations: pure functions over packet bytes and Wire values, plus
// the per-flow state some behaviours need. No I/O here: `ElementRuntime` feeds packets from
// NFQUEUE and carries out the decisions; the tests call this directly without privileges.

import Wire

/// The netfilter hook a packet was queued from (`NF_INET_*`).
public enum PacketHook: UInt8, Hashable, Sendable {
    case prerouting = 0, input = 1, forward = 2, output = 3, postrouting = 4
}

/// What the runtime knows about a queued packet besides its bytes.
public struct PacketContext: Hashable, Sendable {
    public var hook: PacketHook
    /// Milliseconds on a monotonic clock.
    public var now: UInt64
    /// Addresses of the interface the packet came in on (the source of generated ICMP errors).
    public var incomingAddresses: [IPAddress]
    /// Every address of the box (packets to these are not forwarded, so never expire).
    public var localAddresses: Set<IPAddress>

    public init(hook: PacketHook, now: UInt64 = 0, incomingAddresses: [IPAddress] = [],
                localAddresses: Set<IPAddress> = []) {
        self.hook = hook
        self.now = now
        self.incomingAddresses = incomingAddresses
        self.localAddresses = localAddresses
    }
}

/// A packet the element sends itself, after `delay` milliseconds.
public struct Emission: Hashable, Sendable {
    public var bytes: [UInt8]
    public var delay: Int
    public init(_ bytes: [UInt8], delay: Int = 0) { self.bytes = bytes; self.delay = delay }
}

/// What to do with one queued packet.
public struct ElementDecision: Hashable, Sendable {
    public enum Verdict: Hashable, Sendable {
        case accept
        case acceptModified([UInt8])
        case drop
    }

    public var verdict: Verdict
    /// Hold the verdict this long (delay, reordering).
    public var verdictDelay: Int = 0
    /// Packets to inject through the raw socket (in this order, each after its delay).
    public var injections: [Emission] = []

    public init(verdict: Verdict, verdictDelay: Int = 0, injections: [Emission] = []) {
        self.verdict = verdict
        self.verdictDelay = verdictDelay
        self.injections = injections
    }

    /// Every packet that leaves the box because of this decision, verdict first, in order.
    public func outputs(original: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        switch verdict {
        case .accept: out.append(original)
        case .acceptModified(let b): out.append(b)
        case .drop: break
        }
        return out + injections.map(\.bytes)
    }
}

/// The element's random decisions come from one `SplitMix64` seeded by `--seed`: the same seed
/// gives the same lab run.
extension SplitMix64 {
    /// True with probability `percent`/100.
    public mutating func chance(_ percent: Double) -> Bool {
        guard percent > 0 else { return false }
        return Double(next() >> 11) / Double(1 << 53) * 100 < percent
    }
}

/// One direction of a TCP connection.
public struct FlowKey: Hashable, Sendable {
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16

    public init(source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
    }

    public var reversed: FlowKey {
        FlowKey(source: destination, destination: source, sourcePort: destinationPort, destinationPort: sourcePort)
    }

    init(_ ip: IPHeader, _ h: TCPHeader) {
        self.init(source: ip.source, destination: ip.destination, sourcePort: h.sourcePort, destinationPort: h.destinationPort)
    }
}

/// The element: behaviours applied in order to every queued packet, with their state.
public struct ElementPipeline: Sendable {
    public let behaviours: [ElementBehaviour]
    var random: SplitMix64
    /// seqrand: the offset added to the sequence numbers of each direction.
    var sequenceOffsets: [FlowKey: UInt32] = [:]
    /// coalesce: the MSS each endpoint announced (the most its peer may send it).
    var announcedMSS: [FlowKey: Int] = [:]
    /// coalesce: the segment held per direction while waiting for the next one.
    var pending: [FlowKey: Pending] = [:]

    /// How long coalesce holds a segment waiting for the next one.
    public static let coalesceHold = 20
    /// How long `reorder` holds the packets it picks, so later ones overtake them.
    public static let reorderHold = 25
    /// The mark on every packet the element sends itself; the queue rules exclude it.
    public static let injectionMark: UInt32 = 0x4d50

    struct Pending: Sendable {
        var packet: IPPacket
        var since: UInt64
    }

    public init(behaviours: [ElementBehaviour], seed: UInt64) {
        self.behaviours = behaviours
        self.random = SplitMix64(seed: seed)
    }

    /// A packet in flight through the behaviours.
    struct Work { var bytes: [UInt8]; var delay: Int }

    /// Decides what happens to one queued packet.
    public mutating func process(_ bytes: [UInt8], context: PacketContext) -> ElementDecision {
        var work = [Work(bytes: bytes, delay: 0)]
        var replies: [Emission] = []
        for b in behaviours where applies(b, in: context.hook) {
            var next: [Work] = []
            for w in work {
                next += apply(b, to: w, context: context, replies: &replies)
            }
            work = next
        }
        trimState()
        return Self.decision(original: bytes, outputs: work, replies: replies)
    }

    /// One output leaves by the verdict (held for its delay); several are injected in order
    /// instead, so that they arrive in the order the behaviours made them.
    static func decision(original: [UInt8], outputs: [Work], replies: [Emission]) -> ElementDecision {
        switch outputs.count {
        case 0:
            return ElementDecision(verdict: .drop, injections: replies)
        case 1:
            let o = outputs[0]
            return ElementDecision(verdict: o.bytes == original ? .accept : .acceptModified(o.bytes),
                                   verdictDelay: o.delay, injections: replies)
        default:
            return ElementDecision(verdict: .drop, injections: replies + outputs.map { Emission($0.bytes, delay: $0.delay) })
        }
    }

    /// Segments coalesce held longer than `coalesceHold`, to send now.
    public mutating func flush(now: UInt64) -> [Emission] {
        var out: [Emission] = []
        for (key, p) in pending where now >= p.since + UInt64(Self.coalesceHold) {
            pending[key] = nil
            if let b = try? p.packet.serialized(finalize: true) { out.append(Emission(b)) }
        }
        return out
    }

    /// When `flush` next has something to do.
    public var nextDeadline: UInt64? {
        pending.values.map { $0.since + UInt64(Self.coalesceHold) }.min()
    }

    func applies(_ b: ElementBehaviour, in hook: PacketHook) -> Bool {
        switch b.kind {
        case .rfc792: return hook == .prerouting || hook == .output
        default: return b.hook == .prerouting ? hook == .prerouting : hook == .forward
        }
    }

    /// Bounds the flow tables of a long-running element.
    mutating func trimState() {
        if sequenceOffsets.count > 100_000 { sequenceOffsets.removeAll() }
        if announcedMSS.count > 100_000 { announcedMSS.removeAll() }
    }

    mutating func apply(_ b: ElementBehaviour, to w: Work, context: PacketContext, replies: inout [Emission]) -> [Work] {
        if case .rfc792 = b.kind {
            switch Transforms.rfc792(w.bytes, context: context, identification: UInt16(truncatingIfNeeded: random.next())) {
            case .pass: return [w]
            case .replace(let b): return [Work(bytes: b, delay: w.delay)]
            case .answer(let icmp): replies.append(Emission(icmp)); return []
            }
        }
        guard let packet = try? IPPacket.parse(w.bytes), let seg = packet.tcp, packet.missingBytes == 0 else {
            return [w]  // not a complete TCP segment: nothing here to change
        }
        if case .coalesce = b.kind {
            return coalesce(packet, seg, w, now: context.now)
        }
        if case .seqrand = b.kind {
            let key = FlowKey(packet.ip, seg.header)
            let own = offset(for: key), peer = offset(for: key.reversed)
            return [Work(bytes: Transforms.shiftSequence(w.bytes, packet: packet, seqBy: own, ackBy: 0 &- peer), delay: w.delay)]
        }
        if seg.header.flags.contains(.syn) { noteMSS(packet, seg) }
        guard b.segments.matches(seg.header.flags, payloadLength: seg.payload.count) else { return [w] }
        func same(_ bytes: [UInt8]) -> [Work] { [Work(bytes: bytes, delay: w.delay)] }
        switch b.kind {
        case .strip(let o): return same(Transforms.overwriteOptions(w.bytes, packet: packet, matching: o, with: 1))
        case .eol(let o): return same(Transforms.overwriteOptions(w.bytes, packet: packet, matching: o, with: 0))
        case .corrupt(let o): return same(Transforms.corruptOptions(w.bytes, packet: packet, matching: o))
        case .remove(let o): return same(Transforms.removeOptions(packet, matching: o) ?? w.bytes)
        case .drop(let o): return seg.header.options.options.contains(where: o.matches) ? [] : [w]
        case .payload(let edit): return same(Transforms.editPayload(w.bytes, packet: packet, edit))
        case .split(let n):
            return Transforms.split(packet, pieceSize: n).map { Work(bytes: $0, delay: w.delay) }
        case .echoMPCapable:
            guard let synack = Transforms.echoMPCapable(packet, random: &random) else { return [w] }
            replies.append(Emission(synack))
            return []
        case .delay(let ms): return [Work(bytes: w.bytes, delay: w.delay + ms)]
        case .loss(let p): return random.chance(p) ? [] : [w]
        case .duplicate(let p): return random.chance(p) ? [w, w] : [w]
        case .reorder(let p):
            return random.chance(p) ? [Work(bytes: w.bytes, delay: w.delay + Self.reorderHold)] : [w]
        case .coalesce, .seqrand, .rfc792: return [w]  // handled above
        }
    }

    mutating func offset(for key: FlowKey) -> UInt32 {
        if let o = sequenceOffsets[key] { return o }
        var o: UInt32 = 0
        while o == 0 { o = UInt32(truncatingIfNeeded: random.next()) }
        sequenceOffsets[key] = o
        return o
    }

    mutating func noteMSS(_ packet: IPPacket, _ seg: TCPSegment) {
        for case .maximumSegmentSize(let v) in seg.header.options.options {
            // The sender of this SYN announces what it can receive.
            announcedMSS[FlowKey(packet.ip, seg.header).reversed] = Int(v)
        }
    }

    /// The most payload one segment of `key` may carry: the receiver's MSS less the options
    /// the segment repeats (RFC 6691).
    func payloadLimit(_ key: FlowKey, optionBytes: Int) -> Int {
        max(1, (announcedMSS[key] ?? 536) - optionBytes)
    }

    mutating func coalesce(_ packet: IPPacket, _ seg: TCPSegment, _ w: Work, now: UInt64) -> [Work] {
        let key = FlowKey(packet.ip, seg.header)
        if seg.header.flags.contains(.syn) { noteMSS(packet, seg) }
        let isData = !seg.header.flags.contains(.syn) && !seg.header.flags.contains(.fin)
            && !seg.header.flags.contains(.rst) && !seg.payload.isEmpty
        var out: [Work] = []
        func emit(_ p: IPPacket) {
            if let b = try? p.serialized(finalize: true) { out.append(Work(bytes: b, delay: w.delay)) }
        }
        guard isData else {
            // Anything else of this direction first releases what is held, keeping the order.
            if let held = pending.removeValue(forKey: key) { emit(held.packet) }
            out.append(w)
            return out
        }
        let limit = payloadLimit(key, optionBytes: seg.header.headerLength - 20)
        if var held = pending[key], var h = held.packet.tcp {
            let end = h.header.sequenceNumber &+ UInt32(h.payload.count)
            if end == seg.header.sequenceNumber, h.payload.count + seg.payload.count <= limit {
                h.payload += seg.payload
                h.header.acknowledgmentNumber = seg.header.acknowledgmentNumber
                h.header.window = seg.header.window
                h.header.flags.formUnion(seg.header.flags.intersection([.psh, .ece, .cwr]))
                held.packet.transport = .tcp(h)
                if h.payload.count + 1 > limit {
                    pending[key] = nil
                    emit(held.packet)
                } else {
                    pending[key] = held
                }
                return out
            }
            pending[key] = nil
            emit(held.packet)
        }
        if seg.payload.count < limit {
            pending[key] = Pending(packet: packet, since: now)
        } else {
            out.append(w)
        }
        return out
    }
}

/// The transformations themselves, each a pure function.
public enum Transforms {
    /// Byte offset of the TCP header in a parsed packet's bytes.
    static func tcpStart(_ p: IPPacket) -> Int { p.ip.headerLength }

    /// Overwrites bytes in the transport of `bytes` and updates the TCP checksum incrementally
    /// (RFC 1624), the way a box in the path does: a segment that arrived with a bad checksum
    /// keeps a bad one.
    public static func patch(_ bytes: inout [UInt8], transportStart: Int, checksumOffset: Int = 16,
                             at offset: Int, with new: [UInt8]) {
        guard !new.isEmpty, offset >= transportStart, offset + new.count <= bytes.count else { return }
        let field = transportStart + checksumOffset
        // Words are aligned to the transport start; the range never covers the checksum field.
        let lo = transportStart + (offset - transportStart) / 2 * 2
        let hi = offset + new.count
        func words() -> [UInt16] {
            stride(from: lo, to: hi, by: 2).map { i in
                UInt16(bytes[i]) << 8 | UInt16(i + 1 < bytes.count ? bytes[i + 1] : 0)
            }
        }
        let old = words()
        for (i, b) in new.enumerated() { bytes[offset + i] = b }
        let now = words()
        var ck = bytes.uint16(at: field) ?? 0
        for (o, n) in zip(old, now) where o != n {
            ck = Checksum.incrementalUpdate(ck, old: o, new: n)
        }
        bytes.setUInt16(ck, at: field)
    }

    /// Option byte ranges (absolute offsets) of the options that match.
    static func optionRanges(_ packet: IPPacket, matching o: ElementBehaviour.Option) -> [Range<Int>] {
        guard let seg = packet.tcp else { return [] }
        var at = tcpStart(packet) + 20
        var out: [Range<Int>] = []
        for opt in seg.header.options.options {
            let len = opt.encodedLength
            if o.matches(opt) { out.append(at..<(at + len)) }
            at += len
        }
        return out
    }

    /// strip (NOP, `fill` 1) and eol (`fill` 0): overwrite the matching options in place.
    public static func overwriteOptions(_ bytes: [UInt8], packet: IPPacket, matching o: ElementBehaviour.Option,
                                        with fill: UInt8) -> [UInt8] {
        var out = bytes
        for r in optionRanges(packet, matching: o) {
            patch(&out, transportStart: tcpStart(packet), at: r.lowerBound, with: [UInt8](repeating: fill, count: r.count))
        }
        return out
    }

    /// The bytes of an option that `corrupt` inverts, relative to the option's start: all after
    /// kind and length; for MPTCP, after the subtype byte as well and, in options longer than 4
    /// bytes, after the byte that follows it (version/flags or address id). What is left is the
    /// option's value — keys, truncated and full HMACs, nonces, tokens, sequence numbers — so the
    /// option still parses as the same subtype, with values that no longer match.
    public static func corruptedRange(kind: UInt8, length: Int) -> Range<Int> {
        let start = kind == 30 ? (length > 4 ? 4 : 3) : 2
        return min(start, length)..<length
    }

    /// corrupt: inverts (XOR 0xff) the value bytes of the matching options in place, the TCP
    /// checksum updated incrementally, length and header unchanged.
    public static func corruptOptions(_ bytes: [UInt8], packet: IPPacket, matching o: ElementBehaviour.Option) -> [UInt8] {
        var out = bytes
        for r in optionRanges(packet, matching: o) {
            let v = corruptedRange(kind: bytes[r.lowerBound], length: r.count)
            let at = r.lowerBound + v.lowerBound
            patch(&out, transportStart: tcpStart(packet), at: at, with: out[at..<(r.lowerBound + v.upperBound)].map { $0 ^ 0xff })
        }
        return out
    }

    /// remove: the header without the matching options (data offset, IP length and checksums
    /// recomputed). Nil when nothing matched or the packet cannot be rebuilt.
    public static func removeOptions(_ packet: IPPacket, matching o: ElementBehaviour.Option) -> [UInt8]? {
        guard var seg = packet.tcp, seg.header.options.options.contains(where: o.matches) else { return nil }
        seg.header.options.options.removeAll(where: o.matches)
        // Padding after the last option (EOL and zeros) is written again as needed.
        if seg.header.options.options.last == .endOfList, seg.header.options.trailer.allSatisfy({ $0 == 0 }) {
            seg.header.options.options.removeLast()
            seg.header.options.trailer = []
        }
        var p = packet
        p.transport = .tcp(seg)
        return try? p.serialized(finalize: true)
    }

    /// seqrand: adds `seqBy` to the sequence number and `ackBy` to the acknowledgment number
    /// and to the SACK block edges (which live in the peer's sequence space).
    public static func shiftSequence(_ bytes: [UInt8], packet: IPPacket, seqBy: UInt32, ackBy: UInt32) -> [UInt8] {
        guard let seg = packet.tcp else { return bytes }
        var out = bytes
        let t = tcpStart(packet)
        func set32(_ v: UInt32, at off: Int) {
            patch(&out, transportStart: t, at: off,
                  with: [UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16),
                         UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)])
        }
        set32(seg.header.sequenceNumber &+ seqBy, at: t + 4)
        guard seg.header.flags.contains(.ack) else { return out }
        set32(seg.header.acknowledgmentNumber &+ ackBy, at: t + 8)
        var at = t + 20
        for opt in seg.header.options.options {
            if case .sack(let blocks) = opt {
                for (i, b) in blocks.enumerated() {
                    set32(b.left &+ ackBy, at: at + 2 + 8 * i)
                    set32(b.right &+ ackBy, at: at + 6 + 8 * i)
                }
            }
            at += opt.encodedLength
        }
        return out
    }

    /// payload: a same-length edit, checksum updated incrementally.
    public static func editPayload(_ bytes: [UInt8], packet: IPPacket, _ edit: ElementBehaviour.PayloadEdit) -> [UInt8] {
        guard let seg = packet.tcp, !seg.payload.isEmpty else { return bytes }
        let t = tcpStart(packet)
        let payloadStart = t + seg.header.headerLength
        var out = bytes
        switch edit {
        case .replace(let find, let replace):
            let p = seg.payload
            var i = 0
            while i + find.count <= p.count {
                if p[i..<(i + find.count)].elementsEqual(find) {
                    patch(&out, transportStart: t, at: payloadStart + i, with: replace)
                    i += find.count
                } else {
                    i += 1
                }
            }
        case .overwrite(let offset, let b):
            guard offset < seg.payload.count else { return bytes }
            patch(&out, transportStart: t, at: payloadStart + offset, with: Array(b.prefix(seg.payload.count - offset)))
        }
        return out
    }

    /// split: pieces of at most `pieceSize` payload bytes covering the original exactly. Each
    /// piece keeps the header and options; PSH and FIN stay on the last piece only; IPv4
    /// identifications count up from the original's.
    public static func split(_ packet: IPPacket, pieceSize: Int) -> [[UInt8]] {
        guard let seg = packet.tcp, seg.payload.count > pieceSize, pieceSize > 0 else {
            return [(try? packet.serialized()) ?? []].filter { !$0.isEmpty }
        }
        var out: [[UInt8]] = []
        var start = 0
        var index: UInt16 = 0
        while start < seg.payload.count {
            let end = min(seg.payload.count, start + pieceSize)
            var s = seg
            s.payload = Array(seg.payload[start..<end])
            s.header.sequenceNumber = seg.header.sequenceNumber &+ UInt32(start)
            if end < seg.payload.count { s.header.flags.subtract([.psh, .fin]) }
            var p = packet
            p.transport = .tcp(s)
            if case .v4(var h) = p.ip {
                h.identification = h.identification &+ index
                p.ip = .v4(h)
            }
            if let b = try? p.serialized(finalize: true) { out.append(b) }
            start = end
            index &+= 1
        }
        return out
    }

    /// echo-mpc: the SYN/ACK a fake MPTCP box answers a SYN carrying MP_CAPABLE with. The
    /// SYN's MP_CAPABLE comes back: a v0 SYN's key is echoed as it is; a v1 SYN carries no key,
    /// and a SYN/ACK must, so version and flags are copied and a key is drawn from the seed.
    public static func echoMPCapable(_ packet: IPPacket, random: inout SplitMix64) -> [UInt8]? {
        guard let syn = packet.tcp, syn.header.flags.contains(.syn), !syn.header.flags.contains(.ack) else { return nil }
        var mpc: MPCapable?
        var sackOK = false, wscale = false
        var tsval: UInt32?
        for o in syn.header.options.options {
            switch o {
            case .mptcp(.capable(let m)): mpc = m
            case .sackPermitted: sackOK = true
            case .windowScale: wscale = true
            case .timestamps(let v, _): tsval = v
            default: break
            }
        }
        guard var echo = mpc else { return nil }
        if echo.senderKey == nil { echo.senderKey = random.next() }
        echo.receiverKey = nil
        echo.dataLevelLength = nil
        echo.checksum = nil

        var options: [TCPOption] = []
        switch packet.ip {
        case .v4: options.append(.maximumSegmentSize(1460))
        case .v6: options.append(.maximumSegmentSize(1440))
        }
        if sackOK { options.append(.sackPermitted) }
        if let v = tsval { options.append(.timestamps(value: UInt32(truncatingIfNeeded: random.next()), echoReply: v)) }
        if wscale { options += [.noOperation, .windowScale(7)] }
        options.append(.mptcp(.capable(echo)))
        var header = TCPHeader(sourcePort: syn.header.destinationPort, destinationPort: syn.header.sourcePort,
                               sequenceNumber: UInt32(truncatingIfNeeded: random.next()),
                               acknowledgmentNumber: syn.header.sequenceNumber &+ 1,
                               flags: [.syn, .ack], window: 64240, options: options)
        header.checksum = 0
        let ip: IPHeader
        switch packet.ip {
        case .v4(let h):
            var r = IPv4Header(source: h.destination, destination: h.source, protocol: .tcp, ttl: 64)
            r.dontFragment = true
            ip = .v4(r)
        case .v6(let h):
            ip = .v6(IPv6Header(source: h.destination, destination: h.source, nextHeader: .tcp, hopLimit: 64))
        }
        return try? IPPacket(ip: ip, transport: .tcp(TCPSegment(header: header))).serialized(finalize: true)
    }

    public enum RFC792Result: Hashable, Sendable {
        /// Not for this behaviour.
        case pass
        /// An ICMP error of the box's own, with its quote cut to the IP header and 8 bytes.
        case replace([UInt8])
        /// The packet expires here: drop it and send this time-exceeded instead.
        case answer([UInt8])
    }

    /// rfc792: in prerouting, a packet to be forwarded with TTL (hop limit) 1 or 0 is answered
    /// with a time-exceeded quoting only the IP header and the first 8 bytes after it (28 bytes
    /// for IPv4 without options, 48 for IPv6), from the incoming interface's address. In output,
    /// the box's own ICMP errors get their quotes cut the same way.
    public static func rfc792(_ bytes: [UInt8], context: PacketContext, identification: UInt16) -> RFC792Result {
        guard let packet = try? IPPacket.parse(bytes) else { return .pass }
        if context.hook == .output {
            guard case .icmp(var m) = packet.transport, m.isError, let q = m.quote else { return .pass }
            let cut = quoteLength(q.bytes)
            guard q.bytes.count > cut || m.rfc4884Length != 0 || m.extensions != nil else { return .pass }
            m.body = Array(q.bytes.prefix(cut))
            // The RFC 4884 length goes with the extensions; an MTU (frag needed, too big) stays.
            if m.rfc4884Length != 0 { m.rest = m.family == .v4 ? m.rest & 0xff00_ffff : m.rest & 0x00ff_ffff }
            var p = packet
            p.transport = .icmp(m)
            return (try? p.serialized(finalize: true)).map { .replace($0) } ?? .pass
        }
        guard context.hook == .prerouting, packet.ip.ttl <= 1,
              !context.localAddresses.contains(packet.ip.destination),
              isForwardable(packet.ip.destination), isForwardable(packet.ip.source) else { return .pass }
        let quote = Array(bytes.prefix(quoteLength(bytes)))
        switch packet.ip {
        case .v4(let h):
            // Never answer an ICMP error with one (RFC 1122 §3.2.2).
            if case .icmp(let m) = packet.transport, m.isError { return .pass }
            guard let src = context.incomingAddresses.compactMap({ a -> IPv4Address? in
                if case .v4(let v) = a { return v } else { return nil }
            }).first else { return .pass }
            var ip = IPv4Header(source: src, destination: h.source, protocol: .icmp, ttl: 64)
            ip.identification = identification
            let icmp = ICMPMessage(family: .v4, type: ICMPv4Type.timeExceeded, code: 0, body: quote)
            return (try? IPPacket(ip: .v4(ip), transport: .icmp(icmp)).serialized(finalize: true)).map { .answer($0) } ?? .pass
        case .v6(let h):
            if case .icmp(let m) = packet.transport, m.isError { return .pass }
            let candidates = context.incomingAddresses.compactMap { a -> IPv6Address? in
                if case .v6(let v) = a { return v } else { return nil }
            }
            // A global address when there is one (a link-local source only reaches the link).
            guard let src = candidates.first(where: { $0.high >> 54 != 0x3fa }) ?? candidates.first else { return .pass }
            let ip = IPv6Header(source: src, destination: h.source, nextHeader: .icmpv6, hopLimit: 64)
            let icmp = ICMPMessage(family: .v6, type: ICMPv6Type.timeExceeded, code: 0, body: quote)
            return (try? IPPacket(ip: .v6(ip), transport: .icmp(icmp)).serialized(finalize: true)).map { .answer($0) } ?? .pass
        }
    }

    /// Whether a router would forward (and so expire) traffic with this address: not multicast,
    /// broadcast, loopback or link-local (an MLD report has hop limit 1 and never expires).
    static func isForwardable(_ a: IPAddress) -> Bool {
        switch a {
        case .v4(let v):
            let top = v.rawValue >> 24
            return top != 127 && top < 224 && v.rawValue >> 16 != 0xa9fe && v.rawValue != 0
        case .v6(let v):
            let first = UInt16(truncatingIfNeeded: v.high >> 48)
            return first >> 8 != 0xff && first & 0xffc0 != 0xfe80 && !(v.high == 0 && v.low <= 1)
        }
    }

    /// IP header + 8 bytes: IHL*4 + 8 for IPv4, the 40-byte fixed header + 8 for IPv6.
    static func quoteLength(_ datagram: [UInt8]) -> Int {
        guard let first = datagram.first else { return 0 }
        let header = first >> 4 == 4 ? Int(first & 0xf) * 4 : 40
        return min(datagram.count, header + 8)
    }
}
