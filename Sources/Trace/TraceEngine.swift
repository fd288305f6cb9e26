import Wire
import Probe
import Diff
import PacketIO

/// Runs one trace over a `PacketNetwork`: sends the probe at every TTL, matches ICMP quotes and
/// TCP answers to the probes, diffs the quotes, and draws findings.
///
/// Parallel mode sends every TTL at once (paced by the rate); each TTL waits one timeout from its
/// first send, its retries spread inside that window, so a silent hop costs one timeout in all.
/// Sequential mode sends one TTL at a time, like tracebox, for comparison.
public final class TraceEngine {
    let config: TraceConfiguration
    let network: PacketNetwork

    struct SentProbe {
        var identity: ProbeIdentity
        var packet: IPPacket
        var bytes: [UInt8]
        var time: Double
    }

    private var sent: [ProbeIdentity: SentProbe] = [:]
    private var hops: [Int: HopResult] = [:]
    private var firstSend: [Int: Double] = [:]
    private var probesSent = 0
    private var unmatched = 0
    /// True when the probe expression fixes a field the identity would use.
    private let sequenceIsFree: Bool
    private let identificationIsFree: Bool

    public init(configuration: TraceConfiguration, network: PacketNetwork) {
        config = configuration
        self.network = network
        sequenceIsFree = configuration.probe.tcp.sequenceNumber == nil
        identificationIsFree = configuration.probe.ip.identification == nil
    }

    // MARK: Probes

    func build(_ id: ProbeIdentity) throws -> SentProbe {
        do {
            let p = try config.probe.packet(
                source: config.source, destination: config.target, sourcePort: config.sourcePort,
                destinationPort: config.destinationPort, sequenceNumber: config.sequenceBase &+ id.code,
                ttl: UInt8(id.ttl), identification: config.identificationBase &+ UInt16(truncatingIfNeeded: id.code),
                timestampValue: config.timestampValue)
            // A TTL written in the probe (ip(ttl=...)) would defeat the trace; the engine's wins.
            var packet = p
            switch packet.ip {
            case .v4(var h): h.ttl = UInt8(id.ttl); packet.ip = .v4(h)
            case .v6(var h): h.hopLimit = UInt8(id.ttl); packet.ip = .v6(h)
            }
            let bytes = try packet.serialized(finalize: true)
            return SentProbe(identity: id, packet: try IPPacket.parse(bytes), bytes: bytes, time: 0)
        } catch let e as ProbeError {
            throw TraceError.probe(e.description)
        } catch let e as WireError {
            throw TraceError.probe(e.message)
        }
    }

    func send(_ id: ProbeIdentity) throws {
        var p = try build(id)
        // Timestamp before the send call: a fast reply can be captured before the call returns.
        p.time = network.now()
        do { try network.send(p.bytes) } catch { throw TraceError.network("\(error)") }
        sent[id] = p
        probesSent += 1
        if firstSend[id.ttl] == nil { firstSend[id.ttl] = p.time }
        hops[id.ttl, default: HopResult(ttl: id.ttl)].probes += 1
    }

    // MARK: Matching replies

    /// The probe a reply belongs to, trying the identity fields that survived.
    func identify(sequence: UInt32?, identification: UInt16?, replyTime: Double) -> (ProbeIdentity, String)? {
        if sequenceIsFree, let s = sequence, let id = ProbeIdentity.decode(s &- config.sequenceBase), sent[id] != nil {
            return (id, "sequence")
        }
        if identificationIsFree, let ipid = identification,
           let id = ProbeIdentity.decode(UInt32(ipid &- config.identificationBase)), sent[id] != nil {
            return (id, "ip-id")
        }
        return nil
    }

    /// Matches a TCP answer by what it acknowledges, else by order (the earliest unanswered probe).
    func identifyAnswer(_ seg: TCPSegment, replyTime: Double) -> (ProbeIdentity, String)? {
        if sequenceIsFree {
            let payload = UInt32(truncatingIfNeeded: config.probe.payload.count)
            for delta in [1, 1 &+ payload, payload, 0] as [UInt32] {
                if let id = ProbeIdentity.decode(seg.header.acknowledgmentNumber &- delta &- config.sequenceBase), sent[id] != nil {
                    return (id, "ack")
                }
            }
        }
        let candidates = sent.values.filter { $0.time <= replyTime && hops[$0.identity.ttl]?.reply == ReplyKind.none }
        return candidates.min { $0.identity < $1.identity }.map { ($0.identity, "order") }
    }

    func handle(_ received: ReceivedPacket) {
        guard let packet = try? IPPacket.parse(received.bytes) else { return }
        switch packet.transport {
        case .icmp(let m) where m.isError:
            handleICMPError(m, from: packet.ip.source, at: received.time)
        case .tcp(let seg) where packet.ip.source == config.target
            && seg.header.sourcePort == (config.probe.tcp.destinationPort ?? config.destinationPort)
            && seg.header.destinationPort == (config.probe.tcp.sourcePort ?? config.sourcePort):
            guard let (id, how) = identifyAnswer(seg, replyTime: received.time), let probe = sent[id] else { unmatched += 1; return }
            var hop = hops[id.ttl, default: HopResult(ttl: id.ttl)]
            guard hop.reply == .none else { return }
            let flags = seg.header.flags
            hop.reply = flags.contains([.syn, .ack]) ? .synack : flags.contains(.rst) ? .rst : .tcp
            hop.address = packet.ip.source
            hop.rttMilliseconds = (received.time - probe.time) * 1000
            hop.tcpReply = seg
            hop.matchedBy = how
            hops[id.ttl] = hop
        default:
            return
        }
    }

    func handleICMPError(_ m: ICMPMessage, from router: IPAddress, at time: Double) {
        guard let quote = m.quote, let inner = quote.packet, inner.ip.destination == config.target,
              inner.ip.upperLayerProtocol == .tcp else { return }
        let sport: UInt16, dport: UInt16, seq: UInt32?
        switch inner.transport {
        case .tcp(let s): sport = s.header.sourcePort; dport = s.header.destinationPort; seq = s.header.sequenceNumber
        case .partialTCP(let p): sport = p.sourcePort; dport = p.destinationPort; seq = p.sequenceNumber
        default: return
        }
        guard sport == (config.probe.tcp.sourcePort ?? config.sourcePort),
              dport == (config.probe.tcp.destinationPort ?? config.destinationPort) else { return }
        var ipid: UInt16?
        if case .v4(let h) = inner.ip { ipid = h.identification }
        guard let (id, how) = identify(sequence: seq, identification: ipid, replyTime: time), let probe = sent[id] else {
            unmatched += 1
            return
        }
        var hop = hops[id.ttl, default: HopResult(ttl: id.ttl)]
        guard hop.reply == .none else { return }
        switch (m.family, m.type) {
        case (.v4, ICMPv4Type.timeExceeded), (.v6, ICMPv6Type.timeExceeded): hop.reply = .timeExceeded
        case (.v4, ICMPv4Type.destinationUnreachable):
            hop.reply = m.code == 4 ? .packetTooBig : .unreachable
        case (.v6, ICMPv6Type.destinationUnreachable): hop.reply = .unreachable
        case (.v6, ICMPv6Type.packetTooBig): hop.reply = .packetTooBig
        case (.v4, ICMPv4Type.parameterProblem), (.v6, ICMPv6Type.parameterProblem): hop.reply = .parameterProblem
        default: hop.reply = .unreachable
        }
        hop.address = router
        hop.rttMilliseconds = (time - probe.time) * 1000
        hop.icmpType = m.type
        hop.icmpCode = m.code
        hop.matchedBy = how
        hop.diff = QuoteDiffer.diff(sent: probe.packet, sentBytes: probe.bytes, quote: quote)
        hop.mpls = m.extensions?.objects.compactMap(\.mplsLabelStack).flatMap { $0 } ?? []
        hops[id.ttl] = hop
    }

    // MARK: Progress

    /// The TTL at which the path ends: a TCP answer from the target or an unreachable.
    var terminalTTL: Int? {
        hops.values.filter { [.synack, .rst, .tcp, .unreachable].contains($0.reply) }.map(\.ttl).min()
    }

    func isResolved(_ ttl: Int, now: Double) -> Bool {
        if let h = hops[ttl], h.reply != .none { return true }
        guard let first = firstSend[ttl] else { return false }
        return now >= first + config.timeout
    }

    func isComplete(now: Double) -> Bool {
        let last = terminalTTL ?? config.maxTTL
        return (config.minTTL...last).allSatisfy { isResolved($0, now: now) }
    }

    // MARK: Running

    public func run() throws -> TraceResult {
        try config.validate()
        let start = network.now()
        if config.sequential { try runSequential() } else { try runParallel() }
        var result = assemble(start: start)
        if config.checkProxy, result.destination.reached, let d = result.destination.ttl,
           result.destination.reply != .unreachable {
            if let proxy = try proxyCheck(ttl: d) { result.findings.append(proxy) }
        }
        if config.checkBlackhole, !result.destination.reached, let control = try blackholeCheck(result) {
            result.findings.append(control)
        }
        result.durationSeconds = network.now() - start
        result.probesSent = probesSent
        return result
    }

    func runParallel() throws {
        let interval = 1.0 / config.rate
        var queue: [ProbeIdentity] = (config.minTTL...config.maxTTL).map { ProbeIdentity(ttl: $0, attempt: 0) }
        var nextSend = network.now()
        var retriesQueued: [Int: Int] = [:]  // ttl -> attempts queued so far
        let spacing = config.timeout / Double(config.retries + 1)
        // A bound no trace can legitimately exceed: every probe paced, plus two timeouts.
        let hardStop = nextSend + Double((config.maxTTL - config.minTTL + 1) * (config.retries + 1)) / config.rate
            + 2 * config.timeout + 1

        while true {
            let now = network.now()
            if now >= hardStop { return }
            // Send what is due, skipping TTLs past the end of the path.
            while let id = queue.first, nextSend <= now {
                queue.removeFirst()
                if let t = terminalTTL, id.ttl > t { continue }
                if id.attempt > 0, hops[id.ttl]?.reply != ReplyKind.none { continue }
                try send(id)
                nextSend = max(nextSend + interval, network.now())
            }
            // Queue retries whose time has come.
            for (ttl, first) in firstSend {
                let done = retriesQueued[ttl, default: 0]
                guard done < config.retries, hops[ttl]?.reply == ReplyKind.none else { continue }
                if let t = terminalTTL, ttl > t { continue }
                if now >= first + spacing * Double(done + 1) {
                    retriesQueued[ttl] = done + 1
                    queue.append(ProbeIdentity(ttl: ttl, attempt: done + 1))
                }
            }
            if queue.isEmpty && isComplete(now: now) { return }

            // Wait for a reply until the next thing to do.
            var wake = now + config.timeout
            if !queue.isEmpty { wake = min(wake, nextSend) }
            // Only future events: a deadline already passed has been dealt with above.
            for (ttl, first) in firstSend where hops[ttl]?.reply == ReplyKind.none {
                let done = retriesQueued[ttl, default: 0]
                let retryAt = first + spacing * Double(done + 1)
                if done < config.retries, retryAt > now { wake = min(wake, retryAt) }
                if first + config.timeout > now { wake = min(wake, first + config.timeout) }
            }
            // Never spin: wait at least a millisecond when nothing is due.
            wake = max(wake, now + 0.001)
            if let packet = try receive(until: wake) { handle(packet) }
        }
    }

    func runSequential() throws {
        for ttl in config.minTTL...config.maxTTL {
            for attempt in 0...config.retries {
                try send(ProbeIdentity(ttl: ttl, attempt: attempt))
                let deadline = network.now() + config.timeout
                while hops[ttl]?.reply == ReplyKind.none, network.now() < deadline {
                    if let packet = try receive(until: deadline) { handle(packet) }
                }
                if hops[ttl]?.reply != ReplyKind.none { break }
            }
            if let t = terminalTTL, t <= ttl { return }
        }
    }

    func receive(until deadline: Double) throws -> ReceivedPacket? {
        do { return try network.receive(until: deadline) } catch { throw TraceError.network("\(error)") }
    }

    // MARK: Result

    func assemble(start: Double) -> TraceResult {
        let terminal = terminalTTL
        let last = terminal ?? (hops.keys.max() ?? config.minTTL)
        let hopList = (config.minTTL...max(config.minTTL, last)).compactMap { hops[$0] }
        var destination = DestinationResult(reached: false, reply: .none, ttl: nil, address: nil, options: [])
        if let t = terminal, let h = hops[t] {
            let fromTarget = h.address == config.target
            destination = DestinationResult(reached: fromTarget, reply: h.reply, ttl: t, address: h.address,
                                            options: h.tcpReply?.header.options.options ?? [])
        }
        var findings = FindingAggregator.findings(hops: hopList.compactMap { h in h.diff.map { (h.ttl, $0) } })
        if destination.reached, let t = destination.ttl, let reply = hops[t]?.tcpReply {
            findings += destinationFindings(reply: reply, ttl: t)
        }
        let stop: StopReason
        if let t = terminal, let h = hops[t] {
            stop = h.reply == .unreachable ? .unreachable : (hopList.allSatisfy { $0.reply != .none } ? .completed : .timeout)
        } else {
            stop = hops[config.maxTTL] != nil ? .maxTTL : .timeout
        }
        let firstProbe = (try? build(ProbeIdentity(ttl: config.minTTL, attempt: 0)).packet)
            ?? IPPacket(ip: .v4(IPv4Header(source: IPv4Address(rawValue: 0), destination: IPv4Address(rawValue: 0))), transport: .other([]))
        return TraceResult(target: config.target, port: config.probe.tcp.destinationPort ?? config.destinationPort,
                           probeText: config.probe.text, sent: firstProbe, hops: hopList, destination: destination,
                           findings: findings, stopReason: stop, sequential: config.sequential,
                           durationSeconds: network.now() - start, probesSent: probesSent)
    }

    /// What the destination's answer says about MP_CAPABLE, when the probe carried one.
    func destinationFindings(reply: TCPSegment, ttl: Int) -> [Finding] {
        guard let ours = config.probe.options.compactMap({ o -> MPCapable? in
            if case .mptcp(.capable(let c)) = o { return c }
            return nil
        }).first else { return [] }
        let theirs = reply.header.options.options.compactMap { o -> MPCapable? in
            if case .mptcp(.capable(let c)) = o { return c }
            return nil
        }.first
        guard let mpc = theirs else {
            return [Finding(id: .destNoMPCapable, hop: ttl)]
        }
        // A server answers with its own key; a 4-byte option or our own key back is a copy.
        let echoed = mpc.senderKey == nil || (ours.senderKey != nil && mpc.senderKey == ours.senderKey) || mpc == ours
        if echoed {
            return [Finding(id: .destMPCapableEchoed, hop: ttl,
                            detail: FindingDetail(version: mpc.version, flags: mpc.flags,
                                                  note: mpc.senderKey == nil ? "MP_CAPABLE without a key in a SYN/ACK" : "our own key came back"))]
        }
        return [Finding(id: .destMPCapable, hop: ttl, detail: FindingDetail(version: mpc.version, flags: mpc.flags))]
    }

    // MARK: Checks

    /// Sends an ICMP echo with the TTL at which a TCP answer came: if it expires on the way, the
    /// answer came from a box before the destination.
    func proxyCheck(ttl: Int) throws -> Finding? {
        let echoID = config.sourcePort
        let echoSeq = UInt16(truncatingIfNeeded: ttl)
        let icmp: ICMPMessage
        let ip: IPHeader
        switch (config.source, config.target) {
        case let (.v4(s), .v4(d)):
            icmp = ICMPMessage(family: .v4, type: ICMPv4Type.echoRequest, code: 0, rest: UInt32(echoID) << 16 | UInt32(echoSeq),
                               body: Array("mptracebox".utf8))
            ip = .v4(IPv4Header(source: s, destination: d, protocol: .icmp, ttl: UInt8(ttl)))
        case let (.v6(s), .v6(d)):
            icmp = ICMPMessage(family: .v6, type: ICMPv6Type.echoRequest, code: 0, rest: UInt32(echoID) << 16 | UInt32(echoSeq),
                               body: Array("mptracebox".utf8))
            ip = .v6(IPv6Header(source: s, destination: d, nextHeader: .icmpv6, hopLimit: UInt8(ttl)))
        default: return nil
        }
        let bytes: [UInt8]
        do { bytes = try IPPacket(ip: ip, transport: .icmp(icmp)).serialized(finalize: true) } catch { return nil }
        for _ in 0...config.retries {
            do { try network.send(bytes) } catch { throw TraceError.network("\(error)") }
            probesSent += 1
            let deadline = network.now() + config.timeout
            while let r = try receive(until: deadline) {
                guard let p = try? IPPacket.parse(r.bytes), case .icmp(let m) = p.transport else { continue }
                let echoReply = (m.family == .v4 && m.type == ICMPv4Type.echoReply) || (m.family == .v6 && m.type == ICMPv6Type.echoReply)
                if echoReply, p.ip.source == config.target, m.rest == icmp.rest { return nil }
                if m.isError, let inner = m.quote?.packet, inner.ip.destination == config.target,
                   case .icmp(let q) = inner.transport, q.rest == icmp.rest {
                    let expired = (m.family == .v4 && m.type == ICMPv4Type.timeExceeded) || (m.family == .v6 && m.type == ICMPv6Type.timeExceeded)
                    guard expired else { return nil }
                    return Finding(id: .pathProxy, hop: ttl, after: ttl > config.minTTL ? ttl - 1 : nil,
                                   detail: FindingDetail(note: "a TCP answer came at TTL \(ttl), but an ICMP echo with that TTL expired at \(p.ip.source)"))
                }
            }
        }
        return nil
    }

    /// The source port of the blackhole check's control probe (a separate flow).
    public static func controlPort(_ sport: UInt16) -> UInt16 { sport == 65535 ? 1024 : sport + 1 }

    /// When the trace stalls, runs the same probe without the suspect option; if that one goes
    /// further and the original, traced once more, stalls again at the same place, the option is
    /// blackholed where the first trace went silent.
    func blackholeCheck(_ result: TraceResult) throws -> Finding? {
        let kinds = config.probe.options.map(\.kind.rawValue)
        let suspect: UInt8? = kinds.contains(30) ? 30 : kinds.contains(34) ? 34 : kinds.last { ![0, 1, 2, 3, 4, 8].contains($0) }
        guard let kind = suspect else { return nil }
        var control = config
        control.probe = config.probe.removing(kind: kind)
        control.checkProxy = false
        control.checkBlackhole = false
        control.sourcePort = Self.controlPort(config.sourcePort)
        control.sequenceBase = config.sequenceBase &+ 0x0100_0000
        let controlResult = try TraceEngine(configuration: control, network: network).run()
        probesSent += controlResult.probesSent
        let lastAnswered = result.hops.filter { $0.reply != .none }.map(\.ttl).max() ?? (config.minTTL - 1)
        let controlGoesFurther = controlResult.destination.reached
            || controlResult.hops.contains { $0.reply != .none && $0.ttl > lastAnswered }
        guard controlGoesFurther else { return nil }
        // Confirm: the probe with the option, traced again, must stall again; otherwise the first
        // stall was transient (loss, neighbour discovery, addresses not yet usable).
        var again = config
        again.checkProxy = false
        again.checkBlackhole = false
        again.sequenceBase = config.sequenceBase &+ 0x0200_0000
        again.identificationBase = config.identificationBase &+ 0x8000
        let second = try TraceEngine(configuration: again, network: network).run()
        probesSent += second.probesSent
        let secondLast = second.hops.filter { $0.reply != .none }.map(\.ttl).max() ?? (config.minTTL - 1)
        guard !second.destination.reached, secondLast <= lastAnswered else { return nil }
        return Finding(id: .optionBlackhole, hop: lastAnswered + 1, after: lastAnswered >= config.minTTL ? lastAnswered : nil,
                       detail: FindingDetail(kind: kind, note: "the same probe without option \(kind) got answers past TTL \(lastAnswered)"))
    }
}
