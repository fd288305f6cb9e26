import Wire
import Probe
import Diff
import PacketIO

/// One trace as an event-driven state machine (scamper style): `step(now:maySend:)` says what to
/// do next (send a packet, wait, or done), `handle(_:)` takes a captured packet, `result` is the
/// outcome. It owns no I/O, so one dispatcher can run thousands of traces over one capture and
/// one injector (the scan), and `TraceEngine.run()` drives a single one over a `PacketNetwork`.
///
/// Parallel mode sends every TTL at once (paced by the rate); each TTL waits one timeout from its
/// first send, its retries spread inside that window, so a silent hop costs one timeout in all.
/// Sequential mode sends one TTL at a time, like tracebox, for comparison. When probing ends,
/// the proxy check (an ICMP echo at the answering TTL) and the blackhole check (a control trace
/// without the suspect option) run as further phases of the same machine.
public final class TraceTask {
    public let config: TraceConfiguration

    /// What the driver should do next.
    public enum Step: Equatable {
        /// Send these bytes now (the task has recorded them as sent at `now`).
        case send([UInt8])
        /// Nothing to send before this time; feed packets with `handle(_:)` meanwhile.
        case wait(until: Double)
        /// A packet is due but `maySend` was false: call again when sending is allowed.
        case blocked
        case finished
    }

    struct SentProbe {
        var identity: ProbeIdentity
        var packet: IPPacket
        var bytes: [UInt8]
        var time: Double
    }

    struct ProxyState {
        var ttl: Int
        var attempt = 0
        var deadline: Double?
        var echo: [UInt8]
        var rest: UInt32
    }

    enum Phase {
        case probing
        case proxy(ProxyState)
        case control(TraceTask)
        /// The original probe traced once more, after the control went further: a blackhole
        /// must stall it again (else the first stall was transient).
        case confirm(TraceTask, control: TraceResult)
        case done
    }

    private var sent: [ProbeIdentity: SentProbe] = [:]
    private var hops: [Int: HopResult] = [:]
    private var firstSend: [Int: Double] = [:]
    private var probesSent = 0
    private var unmatched = 0
    /// True when the probe expression fixes a field the identity would use.
    private let sequenceIsFree: Bool
    private let identificationIsFree: Bool
    private let windowIsFree: Bool
    /// The TCP window of a probe carries its TTL in the low byte (see ProbeIdentity).
    static let windowMark: UInt16 = 0xFA00

    private var phase: Phase = .probing
    private var startTime: Double?
    private var partial: TraceResult?
    public private(set) var result: TraceResult?

    // Parallel mode.
    private var queue: [ProbeIdentity] = []
    private var nextSendTime = 0.0
    private var retriesQueued: [Int: Int] = [:]  // ttl -> attempts queued so far
    private var hardStop = 0.0
    /// Since when a due probe has waited for the driver's permission to send (a shared rate).
    private var blockedSince: Double?
    // Sequential mode.
    private var seqTTL = 0
    private var seqAttempt = 0
    private var seqDeadline: Double?

    /// Validates the configuration; nothing is sent before `step` is called.
    public init(configuration: TraceConfiguration) throws {
        try configuration.validate()
        config = configuration
        sequenceIsFree = configuration.probe.tcp.sequenceNumber == nil
        identificationIsFree = configuration.probe.ip.identification == nil
        windowIsFree = configuration.probe.tcp.window == nil
    }

    /// The address probed and the local ports whose replies belong to this task (the probe's
    /// source port and the blackhole check's control port; the echo identifier is the source port).
    public var target: IPAddress { config.target }
    public var localPorts: [UInt16] {
        let sport = config.probe.tcp.sourcePort ?? config.sourcePort
        return config.checkBlackhole ? [sport, TraceEngine.controlPort(sport)] : [sport]
    }
    public var isFinished: Bool { result != nil }

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
            if windowIsFree, case .tcp(var seg) = packet.transport {
                seg.header.window = Self.windowMark | UInt16(id.ttl & 0xff)
                packet.transport = .tcp(seg)
            }
            let bytes = try packet.serialized(finalize: true)
            return SentProbe(identity: id, packet: try IPPacket.parse(bytes), bytes: bytes, time: 0)
        } catch let e as ProbeError {
            throw TraceError.probe(e.description)
        } catch let e as WireError {
            throw TraceError.probe(e.message)
        }
    }

    /// Builds probe `id` and records it as sent at `now` (timestamped before the send call: a
    /// fast reply can be captured before the call returns).
    func emit(_ id: ProbeIdentity, now: Double) throws -> [UInt8] {
        var p = try build(id)
        p.time = now
        sent[id] = p
        probesSent += 1
        if firstSend[id.ttl] == nil { firstSend[id.ttl] = p.time }
        hops[id.ttl, default: HopResult(ttl: id.ttl)].probes += 1
        return p.bytes
    }

    // MARK: Matching replies

    /// The probe a reply belongs to, trying the identity fields that survived.
    func identify(sequence: UInt32?, identification: UInt16?, window: UInt16? = nil, replyTime: Double) -> (ProbeIdentity, String)? {
        if sequenceIsFree, let s = sequence, let id = ProbeIdentity.decode(s &- config.sequenceBase), sent[id] != nil {
            return (id, "sequence")
        }
        if identificationIsFree, let ipid = identification,
           let id = ProbeIdentity.decode(UInt32(ipid &- config.identificationBase)), sent[id] != nil {
            return (id, "ip-id")
        }
        // The window gives the TTL (not the try): take that TTL's latest probe sent before the reply.
        if windowIsFree, let w = window, w & 0xff00 == Self.windowMark {
            let ttl = Int(w & 0xff)
            let tries = sent.values.filter { $0.identity.ttl == ttl && $0.time <= replyTime }
            if let latest = tries.max(by: { $0.identity.attempt < $1.identity.attempt }) { return (latest.identity, "window") }
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

    /// Takes a captured packet; packets that are not answers to this task are ignored.
    public func handle(_ received: ReceivedPacket) {
        switch phase {
        case .probing: handleProbeReply(received)
        case .proxy(var state):
            if let outcome = proxyReply(received, state: &state) {
                finishProxy(outcome.finding, now: received.time)
            }
        case .control(let task):
            task.handle(received)
            if task.isFinished { finishControl(task, now: received.time) }
        case .confirm(let task, let control):
            task.handle(received)
            if task.isFinished { finishConfirm(task, control: control, now: received.time) }
        case .done: return
        }
    }

    func handleProbeReply(_ received: ReceivedPacket) {
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
        let sport: UInt16, dport: UInt16, seq: UInt32?, window: UInt16?
        switch inner.transport {
        case .tcp(let s):
            sport = s.header.sourcePort; dport = s.header.destinationPort; seq = s.header.sequenceNumber; window = s.header.window
        case .partialTCP(let p): sport = p.sourcePort; dport = p.destinationPort; seq = p.sequenceNumber; window = p.window
        default: return
        }
        guard sport == (config.probe.tcp.sourcePort ?? config.sourcePort),
              dport == (config.probe.tcp.destinationPort ?? config.destinationPort) else { return }
        var ipid: UInt16?
        if case .v4(let h) = inner.ip { ipid = h.identification }
        guard let (id, how) = identify(sequence: seq, identification: ipid, window: window, replyTime: time), let probe = sent[id] else {
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

    // MARK: Stepping

    /// What to do at `now`. Call repeatedly: each `.send` must be sent before the next call.
    /// With `maySend` false the task still advances its timers but returns `.blocked` instead of
    /// a packet (the scan's global rate limiter has no token).
    public func step(now: Double, maySend: Bool = true) throws -> Step {
        if startTime == nil { begin(now: now) }
        switch phase {
        case .done: return .finished
        case .probing:
            if let s = try probingStep(now: now, maySend: maySend) { return s }
            enterChecks(now: now)
            return try step(now: now, maySend: maySend)
        case .proxy(var state):
            if let d = state.deadline, now < d { return .wait(until: d) }
            if state.deadline != nil {
                state.attempt += 1
                guard state.attempt <= config.retries else {
                    finishProxy(nil, now: now)
                    return try step(now: now, maySend: maySend)
                }
            }
            guard maySend else { phase = .proxy(state); return .blocked }
            state.deadline = now + config.timeout
            probesSent += 1
            phase = .proxy(state)
            return .send(state.echo)
        case .control(let task):
            let s = try task.step(now: now, maySend: maySend)
            if s == .finished {
                finishControl(task, now: now)
                return try step(now: now, maySend: maySend)
            }
            return s
        case .confirm(let task, let control):
            let s = try task.step(now: now, maySend: maySend)
            if s == .finished {
                finishConfirm(task, control: control, now: now)
                return try step(now: now, maySend: maySend)
            }
            return s
        }
    }

    func begin(now: Double) {
        startTime = now
        if config.sequential {
            seqTTL = config.minTTL
        } else {
            queue = (config.minTTL...config.maxTTL).map { ProbeIdentity(ttl: $0, attempt: 0) }
            nextSendTime = now
            // A bound no trace can legitimately exceed: every probe paced, plus two timeouts.
            hardStop = now + Double((config.maxTTL - config.minTTL + 1) * (config.retries + 1)) / config.rate
                + 2 * config.timeout + 1
        }
    }

    /// The probing phase's next action, or nil when probing is over.
    func probingStep(now: Double, maySend: Bool) throws -> Step? {
        config.sequential ? try sequentialStep(now: now, maySend: maySend) : try parallelStep(now: now, maySend: maySend)
    }

    func parallelStep(now: Double, maySend: Bool) throws -> Step? {
        // Time spent waiting for a shared rate limiter is not the path's silence.
        if let b = blockedSince { hardStop += now - b; blockedSince = nil }
        if now >= hardStop { return nil }
        let spacing = config.timeout / Double(config.retries + 1)
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
        // Send what is due, skipping TTLs past the end of the path.
        while let id = queue.first, nextSendTime <= now {
            if let t = terminalTTL, id.ttl > t { queue.removeFirst(); continue }
            if id.attempt > 0, hops[id.ttl]?.reply != ReplyKind.none { queue.removeFirst(); continue }
            guard maySend else { blockedSince = now; return .blocked }
            queue.removeFirst()
            let bytes = try emit(id, now: now)
            nextSendTime = max(nextSendTime + 1.0 / config.rate, now)
            return .send(bytes)
        }
        if queue.isEmpty && isComplete(now: now) { return nil }

        var wake = min(now + config.timeout, hardStop)
        if !queue.isEmpty { wake = min(wake, nextSendTime) }
        // Only future events: a deadline already passed has been dealt with above.
        for (ttl, first) in firstSend where hops[ttl]?.reply == ReplyKind.none {
            let done = retriesQueued[ttl, default: 0]
            let retryAt = first + spacing * Double(done + 1)
            if done < config.retries, retryAt > now { wake = min(wake, retryAt) }
            if first + config.timeout > now { wake = min(wake, first + config.timeout) }
        }
        return .wait(until: wake)
    }

    func sequentialStep(now: Double, maySend: Bool) throws -> Step? {
        if let deadline = seqDeadline {
            let answered = hops[seqTTL]?.reply != ReplyKind.none
            if !answered && now < deadline { return .wait(until: deadline) }
            seqDeadline = nil
            if answered || seqAttempt >= config.retries {
                if let t = terminalTTL, t <= seqTTL { return nil }
                if seqTTL >= config.maxTTL { return nil }
                seqTTL += 1
                seqAttempt = 0
            } else {
                seqAttempt += 1
            }
        }
        guard maySend else { return .blocked }
        let bytes = try emit(ProbeIdentity(ttl: seqTTL, attempt: seqAttempt), now: now)
        seqDeadline = now + config.timeout
        return .send(bytes)
    }

    /// Probing is over: assemble, then run the checks that apply.
    func enterChecks(now: Double) {
        let r = assemble(start: startTime ?? now, now: now)
        partial = r
        if config.checkProxy, r.destination.reached, let d = r.destination.ttl, r.destination.reply != .unreachable,
           let (echo, rest) = echoRequest(ttl: d) {
            phase = .proxy(ProxyState(ttl: d, echo: echo, rest: rest))
            return
        }
        enterBlackholeCheck(now: now)
    }

    func enterBlackholeCheck(now: Double) {
        guard let r = partial else { return }
        if config.checkBlackhole, !r.destination.reached, let control = controlConfiguration(),
           let task = try? TraceTask(configuration: control.config) {
            phase = .control(task)
            return
        }
        finish(now: now)
    }

    func finishProxy(_ finding: Finding?, now: Double) {
        if let f = finding { partial?.findings.append(f) }
        enterBlackholeCheck(now: now)
    }

    func finishControl(_ task: TraceTask, now: Double) {
        if let controlResult = task.result, let r = partial {
            probesSent += controlResult.probesSent
            if controlGoesFurther(r, control: controlResult) {
                var again = config
                again.checkProxy = false
                again.checkBlackhole = false
                again.sequenceBase = config.sequenceBase &+ 0x0200_0000
                again.identificationBase = config.identificationBase &+ 0x8000
                if let confirm = try? TraceTask(configuration: again) {
                    phase = .confirm(confirm, control: controlResult)
                    return
                }
            }
        }
        finish(now: now)
    }

    func finishConfirm(_ task: TraceTask, control: TraceResult, now: Double) {
        if let second = task.result, let r = partial {
            probesSent += second.probesSent
            if let f = blackholeFinding(r, control: control, second: second) { partial?.findings.append(f) }
        }
        finish(now: now)
    }

    func finish(now: Double) {
        guard var r = partial else { return }
        r.durationSeconds = now - (startTime ?? now)
        r.probesSent = probesSent
        result = r
        phase = .done
    }

    // MARK: Result

    func assemble(start: Double, now: Double) -> TraceResult {
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
                           durationSeconds: now - start, probesSent: probesSent)
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

    /// The proxy check's ICMP echo with the TTL at which a TCP answer came: if it expires on the
    /// way, the answer came from a box before the destination. Returns the bytes and the echo's
    /// identifier and sequence (the source port and the TTL).
    func echoRequest(ttl: Int) -> ([UInt8], UInt32)? {
        let echoID = config.sourcePort
        let echoSeq = UInt16(truncatingIfNeeded: ttl)
        let rest = UInt32(echoID) << 16 | UInt32(echoSeq)
        let icmp: ICMPMessage
        let ip: IPHeader
        switch (config.source, config.target) {
        case let (.v4(s), .v4(d)):
            icmp = ICMPMessage(family: .v4, type: ICMPv4Type.echoRequest, code: 0, rest: rest, body: Array("mptracebox".utf8))
            ip = .v4(IPv4Header(source: s, destination: d, protocol: .icmp, ttl: UInt8(ttl)))
        case let (.v6(s), .v6(d)):
            icmp = ICMPMessage(family: .v6, type: ICMPv6Type.echoRequest, code: 0, rest: rest, body: Array("mptracebox".utf8))
            ip = .v6(IPv6Header(source: s, destination: d, nextHeader: .icmpv6, hopLimit: UInt8(ttl)))
        default: return nil
        }
        guard let bytes = try? IPPacket(ip: ip, transport: .icmp(icmp)).serialized(finalize: true) else { return nil }
        return (bytes, rest)
    }

    /// What a packet says about the echo: nil when it is not about it; else the outcome.
    func proxyReply(_ r: ReceivedPacket, state: inout ProxyState) -> (finding: Finding?, Void)? {
        guard let p = try? IPPacket.parse(r.bytes), case .icmp(let m) = p.transport else { return nil }
        let echoReply = (m.family == .v4 && m.type == ICMPv4Type.echoReply) || (m.family == .v6 && m.type == ICMPv6Type.echoReply)
        if echoReply, p.ip.source == config.target, m.rest == state.rest { return (nil, ()) }
        if m.isError, let inner = m.quote?.packet, inner.ip.destination == config.target,
           case .icmp(let q) = inner.transport, q.rest == state.rest {
            let expired = (m.family == .v4 && m.type == ICMPv4Type.timeExceeded) || (m.family == .v6 && m.type == ICMPv6Type.timeExceeded)
            guard expired else { return (nil, ()) }
            let ttl = state.ttl
            return (Finding(id: .pathProxy, hop: ttl, after: ttl > config.minTTL ? ttl - 1 : nil,
                            detail: FindingDetail(note: "a TCP answer came at TTL \(ttl), but an ICMP echo with that TTL expired at \(p.ip.source)")), ())
        }
        return nil
    }

    /// The source port of the blackhole check's control probe (a separate flow).
    public static func controlPort(_ sport: UInt16) -> UInt16 { sport == 65535 ? 1024 : sport + 1 }

    /// The same trace without the option that may be blackholed, or nil when there is none.
    func controlConfiguration() -> (config: TraceConfiguration, kind: UInt8)? {
        let kinds = config.probe.options.map(\.kind.rawValue)
        let suspect: UInt8? = kinds.contains(30) ? 30 : kinds.contains(34) ? 34 : kinds.last { ![0, 1, 2, 3, 4, 8].contains($0) }
        guard let kind = suspect else { return nil }
        var control = config
        control.probe = config.probe.removing(kind: kind)
        control.checkProxy = false
        control.checkBlackhole = false
        control.sourcePort = Self.controlPort(config.sourcePort)
        control.sequenceBase = config.sequenceBase &+ 0x0100_0000
        return (control, kind)
    }

    func lastAnswered(_ r: TraceResult) -> Int { r.hops.filter { $0.reply != .none }.map(\.ttl).max() ?? (config.minTTL - 1) }

    func controlGoesFurther(_ result: TraceResult, control: TraceResult) -> Bool {
        let last = lastAnswered(result)
        return control.destination.reached || control.hops.contains { $0.reply != .none && $0.ttl > last }
    }

    /// When the trace stalled, the control trace went further and the original, traced once
    /// more, stalled again at the same place, the option is blackholed where it went silent.
    func blackholeFinding(_ result: TraceResult, control controlResult: TraceResult, second: TraceResult) -> Finding? {
        guard let kind = controlConfiguration()?.kind, controlGoesFurther(result, control: controlResult) else { return nil }
        let lastAnswered = lastAnswered(result)
        guard !second.destination.reached, self.lastAnswered(second) <= lastAnswered else { return nil }
        return Finding(id: .optionBlackhole, hop: lastAnswered + 1, after: lastAnswered >= config.minTTL ? lastAnswered : nil,
                       detail: FindingDetail(kind: kind, note: "the same probe without option \(kind) got answers past TTL \(lastAnswered)"))
    }
}

/// Runs one trace over a `PacketNetwork`: drives a `TraceTask`, sending what it asks for and
/// feeding it what the network captures.
public final class TraceEngine {
    let config: TraceConfiguration
    let network: PacketNetwork

    public init(configuration: TraceConfiguration, network: PacketNetwork) {
        config = configuration
        self.network = network
    }

    public func run() throws -> TraceResult {
        let task = try TraceTask(configuration: config)
        while true {
            let now = network.now()
            switch try task.step(now: now) {
            case .finished:
                guard let r = task.result else { throw TraceError.network("trace finished without a result") }
                return r
            case .send(let bytes):
                do { try network.send(bytes) } catch { throw TraceError.network("\(error)") }
            case .blocked:
                continue
            case .wait(let until):
                // Never spin: wait at least a millisecond when nothing is due.
                let wake = max(until, now + 0.001)
                let packet: ReceivedPacket?
                do { packet = try network.receive(until: wake) } catch { throw TraceError.network("\(error)") }
                if let p = packet { task.handle(p) }
            }
        }
    }

    /// The source port of the blackhole check's control probe (a separate flow).
    public static func controlPort(_ sport: UInt16) -> UInt16 { TraceTask.controlPort(sport) }
}
