import Wire
import PacketIO
import MPTCPCrypto

/// A userspace MPTCP client over `PacketNetwork`: handshake, data with DSS mappings and checksums,
/// MP_JOIN, ADD_ADDR, DATA_FIN close, with every packet recorded for the classifier.
///
/// The engine never guesses: when a step gets no answer after its retransmissions, the fact
/// stays unset and the classifier reports the outcome as unclear or timed out.
public final class SessionEngine {
    let config: SessionConfiguration
    let network: AsyncPacketNetwork
    var record: SessionRecord

    var version: MPTCPVersion = .v1
    var localKey = MPTCPKey(rawValue: 0)
    var remoteKey: MPTCPKey?
    var localIDSN: UInt64 = 0
    var remoteIDSN: UInt64 = 0
    var checksums = false
    /// MPTCP as negotiated, until a fallback (no DSS from the server, MP_FAIL, infinite mapping).
    var mptcp = false
    var subflows: [Subflow] = []

    // Data level, relative offsets (0 = the first byte after the IDSN + 1).
    var dataSent = 0
    var dataAcked = 0
    var dataFinSent = false
    var received: [UInt8] = []
    var receivedPending: [Int: [UInt8]] = [:]
    var remoteDataFin: Int?
    var firstDataMPCapable = true

    /// Packets the dispatcher did not take (ICMP quotes, other flows), for the step that waits on them.
    var inbox: [(index: Int, packet: IPPacket)] = []
    var addAddrID: UInt8 = 1
    /// Set when the close starts: segments after it (FIN exchange, TIME-WAIT ACKs) tell nothing about fallbacks.
    var closing = false

    public init(configuration: SessionConfiguration, network: AsyncPacketNetwork) {
        config = configuration
        self.network = network
        record = SessionRecord(configuration: configuration)
    }

    /// On a blocking network (the CLI, tests): `run()` returns when the session is over.
    public convenience init(configuration: SessionConfiguration, network: PacketNetwork) {
        self.init(configuration: configuration, network: BlockingNetwork(network))
    }

    /// The BPF filter for a session: the server's segments to our ports and ICMP errors.
    public static func captureFilter(_ c: SessionConfiguration) -> String {
        let ports = c.localPorts.map { "dst port \($0)" }.joined(separator: " or ")
        return "(tcp and src host \(c.target) and src port \(c.destinationPort) and (\(ports))) or icmp or icmp6"
    }

    /// Runs the whole session on the calling thread (its network must not suspend: a blocking
    /// one). Throws only for configuration or network-edge failures.
    public func run() throws -> SessionRecord {
        try InlineExecutor.runToCompletion { try await self.runAsync() }
    }

    /// Runs the whole session; suspends whenever its network does (a scan's dispatcher).
    public func runAsync() async throws -> SessionRecord {
        try config.validate()
        record.started = network.now()
        version = config.version == .v0 ? .v0 : .v1
        record.facts.versionSent = version.rawValue
        do {
            try await session()
        } catch let e as SessionError {
            throw e
        } catch let e as MPTCPCryptoError {
            throw SessionError.network("crypto: \(e)")
        } catch {
            throw SessionError.network("\(error)")
        }
        record.facts.received = deliveredData()
        record.facts.checksums = checksums
        record.facts.fellBack = !mptcp && record.facts.versionUsed != nil
        // Not in a defer: a defer would run after the returned copy was made.
        record.duration = network.now() - record.started
        return record
    }

    // MARK: The steps

    func session() async throws {
        let sf = try await openInitial(version: version, port: config.sourcePort)
        record.facts.handshake = sf.outcome
        guard case .synAck(let synAck) = sf.outcome, let flow = sf.flow else {
            if case .noAnswer = sf.outcome { try await plainSYNRetry() }
            return
        }
        try await measureDistance(synAck)
        var initial = flow
        var mpc = record.packets[synAck].packet.tcp?.header.options.mpCapable
        if mpc == nil, config.version == .auto {
            // RFC 8684 §3.1: a v0-only server ignores a v1 SYN; try again with v0.
            let retry = try await openInitial(version: .v0, port: config.retryPort)
            record.facts.v0Retry = retry.outcome
            if let f = retry.flow {
                // The retry's connection carries the session (MPTCP v0, or plain TCP when the v0
                // SYN was answered plainly too); the v1 attempt is abandoned.
                try await sendReset(flow)
                initial = f
                if case .synAck(let i) = retry.outcome,
                   let m = record.packets[i].packet.tcp?.header.options.mpCapable, m.senderKey != nil, m.senderKey != localKey.rawValue {
                    record.facts.v0RetryMPCapable = m
                    version = .v0
                    record.facts.versionSent = 0
                    mpc = m
                    record.facts.synAckMPCapable = m
                }
            } else {
                // No usable answer to the v0 SYN: the v1 connection goes on as plain TCP.
                subflows.removeAll { $0.kind == .initial }
                subflows.insert(flow, at: 0)
            }
        }
        if let m = mpc, try await acceptSynAck(m, synAckPacket: synAck) {
            mptcp = true
        } else {
            if mpc == nil, config.inspectPath, let d = record.facts.pathDistance, d > 1, let syn = record.facts.synPackets.first {
                record.facts.inspections.append(try await inspect(packet: syn, label: "syn", maxTTL: d - 1))
            }
        }
        if config.inspectPath { try await proxyCheck() }
        record.facts.versionUsed = mptcp ? version.rawValue : nil

        try await thirdAck(initial)
        if mptcp { try await ackProbe(initial) }
        if mptcp && config.priority {
            record.facts.prioritySent = try await send(initial.segment(flags: .ack, options: [.mptcp(.priority(MPPriority(backup: true)))] + dataAckOption()),
                                                subflow: initial, label: "mp-prio")
        }

        // Data: the first half on the initial subflow.
        let half = config.join && mptcp ? config.payload.count / 2 : config.payload.count
        try await sendData(initial, range: 0..<half)
        _ = try await waitAcked(initial)
        if !mptcp { try await locateFallback(initial) }

        if mptcp && config.join {
            if let joined = try await openJoin() {
                try await sendData(joined, range: half..<config.payload.count)
                if try await !waitAcked(joined) { record.facts.dataTimedOut = true }
                record.facts.joinBytesAcked = Int(joined.sndUna &- joined.iss &- 1)
            }
        }
        if dataSent < config.payload.count {
            try await sendData(initial, range: dataSent..<config.payload.count)
            if try await !waitAcked(initial) { record.facts.dataTimedOut = true }
        }
        if mptcp && config.addAddress && version == .v1 { try await addAddress(initial) }
        try await awaitEcho()
        record.facts.echoMatches = config.expectEcho ? Array(deliveredData().prefix(config.payload.count)) == config.payload : nil
        if config.fastClose && mptcp { try await fastClose(initial) } else { try await close() }
        record.facts.bytesSent = dataSent
        record.facts.bytesAckedDataLevel = min(dataAcked, dataSent)
        record.facts.bytesAckedSubflow = subflows.reduce(0) { $0 + Int($1.sndUna &- $1.iss) - 1 - ($1.finSent && $1.sndUna == $1.sndNxt ? 1 : 0) }
    }

    struct Opened {
        var outcome: HandshakeOutcome
        var flow: Subflow?
    }

    /// Sends the MP_CAPABLE SYN (with retransmissions) and waits for the answer.
    func openInitial(version v: MPTCPVersion, port: UInt16) async throws -> Opened {
        localKey = try config.localKey.map(MPTCPKey.init(rawValue:)) ?? MPTCPKey.random(version: v)
        localIDSN = try localKey.idsn(v)
        record.facts.localKey = localKey.rawValue
        let iss = config.initialSequence ?? initialSequenceNumber()
        // The initial subflow is always 0 (a v0 retry replaces the v1 attempt); a join is 1.
        let sf = Subflow(id: 0, kind: .initial, local: config.source, localPort: port,
                         remote: config.target, remotePort: config.destinationPort, iss: iss)
        subflows.removeAll { $0.kind == .initial }
        subflows.insert(sf, at: 0)
        var flags: UInt8 = MPCapable.hmacSHA
        if config.checksum { flags |= MPCapable.checksumRequired }
        let mpc = MPCapable(version: v.rawValue, flags: flags, senderKey: v == .v0 ? localKey.rawValue : nil)
        let syn = try sf.segment(flags: .syn, options: synOptions(mpc: mpc))
        let outcome = try await handshake(sf, syn: syn, label: v == .v0 ? "syn v0" : "syn", synPackets: { record.facts.synPackets.append($0) })
        if case .synAck(let i) = outcome, let seg = record.packets[i].packet.tcp {
            record.facts.synAckNOPRun = seg.header.options.longestNOPRun
            record.facts.synAckMPCapable = seg.header.options.mpCapable
        }
        return Opened(outcome: outcome, flow: outcome.isSynAck ? sf : nil)
    }

    /// A clock-driven ISS (RFC 793 §3.3, RFC 6528): 4 µs ticks plus a little randomness.
    ///
    /// A server that closed a previous connection of the same four-tuple first keeps it in
    /// TIME_WAIT; Linux takes a new SYN there only when its sequence number lies after the old
    /// connection's. Purely random ISSs had even odds of an unanswered SYN when a scan or a
    /// `connect` repeats within a minute, and that looked like a SYN-dropping middlebox.
    func initialSequenceNumber() -> UInt32 {
        UInt32(truncatingIfNeeded: UInt64(max(0, network.now()) * 250_000)) &+ UInt32.random(in: 0..<(1 << 16))
    }

    func synOptions(mpc: MPCapable?) -> [TCPOption] {
        var o: [TCPOption] = [.maximumSegmentSize(1400)]
        if let mpc { o.append(.mptcp(.capable(mpc))) }
        return o
    }

    /// Sends a SYN until a SYN/ACK, RST or ICMP error answers it.
    func handshake(_ sf: Subflow, syn: [UInt8], label: String, synPackets: (Int) -> Void) async throws -> HandshakeOutcome {
        var rto = config.timeout
        var attempt = 0, resends = 0
        var next = label
        while attempt <= config.retries {
            synPackets(try await send(syn, subflow: sf, label: next))
            sf.sndNxt = sf.iss &+ 1
            let deadline = network.now() + rto
            var outcome: HandshakeOutcome?
            let stale = sf.staleConnectionResets.count
            // An old connection of the four-tuple was just reset: send the SYN again now, not
            // after a timeout (twice at most).
            let resendNow = { sf.staleConnectionResets.count > stale && resends < 2 }
            try await pump(until: deadline) {
                if let o = sf.handshakeOutcome { outcome = o; return true }
                if let u = self.unreachable(for: sf) { outcome = u; return true }
                return resendNow()
            }
            if let outcome { return outcome }
            if resendNow() {
                resends += 1
                next = "\(label) (after resetting an old connection)"
                continue
            }
            rto *= 2
            attempt += 1
            next = "\(label) (retransmission)"
        }
        return .noAnswer
    }

    /// When every MP_CAPABLE SYN went unanswered: does a plain SYN get through?
    func plainSYNRetry() async throws {
        let sf = Subflow(id: 9, kind: .initial, local: config.source, localPort: config.retryPort,
                         remote: config.target, remotePort: config.destinationPort, iss: initialSequenceNumber())
        subflows.append(sf)
        let syn = try sf.segment(flags: .syn, options: synOptions(mpc: nil))
        let outcome = try await handshake(sf, syn: syn, label: "plain syn", synPackets: { _ in })
        record.facts.plainSYN = outcome
        if outcome.isSynAck { try await sendReset(sf) }
        subflows.removeAll { $0 === sf }
    }

    /// Checks the server's MP_CAPABLE; returns true when MPTCP is on.
    func acceptSynAck(_ m: MPCapable, synAckPacket: Int) async throws -> Bool {
        // A v1 SYN/ACK must carry the server's key (12 bytes); 4 bytes, or our own v0 key, is an echo.
        guard let key = m.senderKey, m.receiverKey == nil else {
            record.facts.synAckEchoed = true
            return false
        }
        if version == .v0 && key == localKey.rawValue {
            record.facts.synAckEchoed = true
            return false
        }
        if m.version != version.rawValue {
            guard m.version == 0, version == .v1 else {
                record.facts.synAckFlagsProblem = "the server answered with version \(m.version)"
                return false
            }
            // RFC 8684 §3.1: a lower version in the SYN/ACK is what the server speaks.
            version = .v0
            localIDSN = try localKey.idsn(.v0)
        }
        if m.flags & MPCapable.hmacSHA == 0 {
            record.facts.synAckFlagsProblem = "flag H (HMAC-SHA) is not set: no crypto algorithm agreed"
            return false
        }
        remoteKey = MPTCPKey(rawValue: key)
        record.facts.remoteKey = key
        remoteIDSN = try MPTCPKey(rawValue: key).idsn(version)
        checksums = config.checksum || m.flags & MPCapable.checksumRequired != 0
        return true
    }

    /// Estimates how many hops away the SYN/ACK's sender is from its TTL (initial 64, 128 or 255).
    func measureDistance(_ synAck: Int) async throws {
        record.facts.pathDistance = PathInspection.distance(receivedTTL: record.packets[synAck].packet.ip.ttl)
    }

    func thirdAck(_ sf: Subflow) async throws {
        var options: [TCPOption] = []
        if mptcp, let rk = remoteKey {
            var flags: UInt8 = MPCapable.hmacSHA
            if checksums { flags |= MPCapable.checksumRequired }
            options.append(.mptcp(.capable(MPCapable(version: version.rawValue, flags: flags, senderKey: localKey.rawValue, receiverKey: rk.rawValue))))
        }
        sf.established = true
        record.facts.thirdAckPacket = try await send(sf.segment(flags: .ack, options: options), subflow: sf, label: "third ack")
        firstDataMPCapable = mptcp && version == .v1
    }

    /// An out-of-window ACK draws a duplicate ACK from the server: with a DSS in it, the server
    /// took our keys (its MPTCP side is up); without, it fell back on the third ACK.
    func ackProbe(_ sf: Subflow) async throws {
        for attempt in 0...min(config.retries, 2) {
            let before = record.packets.count
            let i = try await send(sf.segment(flags: .ack, seq: sf.sndNxt &- 1, options: []), subflow: sf, label: "ack probe")
            _ = i
            var reply: Int?
            // Linux rate-limits answers to out-of-window segments (tcp_invalid_ratelimit, 0.5 s).
            try await pump(until: network.now() + max(config.timeout / 2, 0.6)) {
                for p in self.record.packets[before...] where p.direction == .in && p.subflow == sf.id {
                    if let seg = p.packet.tcp, !seg.header.flags.contains(.syn), !seg.header.flags.contains(.rst) { reply = p.index; return true }
                }
                return false
            }
            if let r = reply, let seg = record.packets[r].packet.tcp {
                record.facts.ackProbeReply = r
                record.facts.ackProbeReplyHasDSS = seg.header.options.mptcp.contains { if case .dss = $0 { return true }; return false }
                record.facts.ackProbeReplyNOPRun = seg.header.options.longestNOPRun
                return
            }
            _ = attempt
        }
    }

    // MARK: Data

    func dataAckOption() -> [TCPOption] {
        guard mptcp, remoteKey != nil else { return [] }
        return [.mptcp(.dss(DSS(dataACK: remoteIDSN &+ 1 &+ UInt64(received.count) &+ (remoteDataFin != nil && remoteDataFin! <= received.count ? 1 : 0), dataACK64: true)))]
    }

    func sendData(_ sf: Subflow, range: Range<Int>) async throws {
        var offset = range.lowerBound
        while offset < range.upperBound {
            let end = min(range.upperBound, offset + config.segmentSize)
            let chunk = Array(config.payload[offset..<end])
            let dsn = localIDSN &+ 1 &+ UInt64(offset)
            let ssn = sf.relativeSend
            var options: [TCPOption] = []
            var label = "data"
            if mptcp {
                let csum = checksums ? Checksum.dss(dataSequenceNumber: dsn, subflowSequenceNumber: ssn,
                                                    dataLevelLength: UInt16(chunk.count), payload: chunk) : nil
                if firstDataMPCapable && sf.kind == .initial && offset == 0, let rk = remoteKey {
                    // RFC 8684 §3.1: the first data carries MP_CAPABLE with both keys and the length.
                    var flags: UInt8 = MPCapable.hmacSHA
                    if checksums { flags |= MPCapable.checksumRequired }
                    options.append(.mptcp(.capable(MPCapable(version: 1, flags: flags, senderKey: localKey.rawValue, receiverKey: rk.rawValue,
                                                             dataLevelLength: UInt16(chunk.count), checksum: csum))))
                    label = "data (mp_capable)"
                } else {
                    let mapping = DSS.Mapping(dataSequenceNumber: dsn, subflowSequenceNumber: ssn, dataLevelLength: UInt16(chunk.count), checksum: csum)
                    let ack = remoteIDSN &+ 1 &+ UInt64(received.count)
                    options.append(.mptcp(.dss(DSS(dataACK: ack, dataACK64: true, mapping: mapping, dsn64: true))))
                }
            }
            let bytes = try sf.segment(flags: [.ack, .psh], options: options, payload: chunk)
            let i = try await send(bytes, subflow: sf, label: label)
            sf.outstanding.append(.init(seq: sf.sndNxt, length: UInt32(chunk.count), bytes: bytes, label: label, sent: network.now(), retries: 0))
            sf.sndNxt &+= UInt32(chunk.count)
            _ = i
            dataSent = max(dataSent, end)
            if sf.kind == .join { record.facts.joinBytesSent += chunk.count }
            offset = end
        }
    }

    /// Waits until the subflow acknowledges all it was sent (and, in MPTCP mode, the data level);
    /// retransmits on timeout. False when it gave up.
    @discardableResult
    func waitAcked(_ sf: Subflow) async throws -> Bool {
        var rto = config.timeout
        var tries = 0
        while true {
            let deadline = network.now() + rto
            try await pump(until: deadline) { self.allAcked(sf) || sf.reset }
            if allAcked(sf) { return true }
            if sf.reset || tries >= config.retries { return false }
            tries += 1
            rto *= 2
            for o in sf.outstanding where seqLT(sf.sndUna, o.seq &+ o.length) {
                try await send(o.bytes, subflow: sf, label: o.label + " (retransmission)")
            }
            // The data-level acknowledgment may lag the subflow's: nudge with a pure ACK.
            if sf.outstanding.isEmpty && mptcp { try await send(sf.segment(flags: .ack, options: dataAckOption()), subflow: sf, label: "ack") }
        }
    }

    func allAcked(_ sf: Subflow) -> Bool {
        guard sf.sndUna == sf.sndNxt else { return false }
        if mptcp { return dataAcked >= dataSent }
        return true
    }

    /// Reads until the echo is complete (or the server closed, or the timeout passed).
    func awaitEcho() async throws {
        let want = config.expectEcho ? config.payload.count : 0
        let deadline = network.now() + config.timeout * Double(1 + config.retries)
        // Without an echo to wait for, what the server sends ends with its DATA_FIN (or FIN):
        // stop there instead of waiting out the deadline.
        try await pump(until: deadline) {
            want > 0 ? self.deliveredData().count >= want : self.remoteDataFin != nil || self.subflows.first?.finReceived == true
        }
        if config.linger > 0 { try await pump(until: network.now() + config.linger) { false } }
    }

    /// The data received at the data level (or, after a fallback, the initial subflow's bytes).
    func deliveredData() -> [UInt8] {
        // After a fallback (single subflow) the initial subflow's bytes are the data.
        if !mptcp, let first = subflows.first, first.stream.count > received.count { return first.stream }
        return received
    }

    // MARK: Close

    func close() async throws {
        closing = true
        guard let initial = subflows.first(where: { $0.kind == .initial }) else { return }
        let live = subflows.filter { $0.established && !$0.reset }
        if mptcp {
            // DATA_FIN: a DSS mapping of length 1 at the end of our data, subflow sequence 0.
            let dsn = localIDSN &+ 1 &+ UInt64(dataSent)
            let csum = checksums ? Checksum.dss(dataSequenceNumber: dsn, subflowSequenceNumber: 0, dataLevelLength: 1, payload: []) : nil
            var rto = config.timeout
            for _ in 0...config.retries {
                let ack = remoteIDSN &+ 1 &+ UInt64(received.count) &+ (remoteDataFin != nil ? 1 : 0)
                let dss = DSS(dataACK: ack, dataACK64: true,
                              mapping: DSS.Mapping(dataSequenceNumber: dsn, subflowSequenceNumber: 0, dataLevelLength: 1, checksum: csum),
                              dsn64: true, dataFIN: true)
                try await send(initial.segment(flags: .ack, options: [.mptcp(.dss(dss))]), subflow: initial, label: "data fin")
                dataFinSent = true
                try await pump(until: network.now() + rto) { self.dataAcked > self.dataSent || initial.reset }
                if dataAcked > dataSent || initial.reset { break }
                rto *= 2
            }
            record.facts.dataFinAcked = dataAcked > dataSent
            // The echo server answers our DATA_FIN with its own.
            try await pump(until: network.now() + config.timeout * 2) { self.remoteDataFin != nil || initial.reset }
        }
        // Subflow FINs.
        for sf in live where !sf.reset {
            let fin = try sf.segment(flags: [.fin, .ack], options: dataAckOption())
            try await send(fin, subflow: sf, label: "fin")
            sf.outstanding.append(.init(seq: sf.sndNxt, length: 1, bytes: fin, label: "fin", sent: network.now(), retries: 0))
            sf.sndNxt &+= 1
            sf.finSent = true
        }
        var rto = config.timeout
        for _ in 0...config.retries {
            try await pump(until: network.now() + rto) { live.allSatisfy { ($0.finReceived && $0.sndUna == $0.sndNxt) || $0.reset } }
            if live.allSatisfy({ ($0.finReceived && $0.sndUna == $0.sndNxt) || $0.reset }) { break }
            rto *= 2
            for sf in live where !sf.reset && sf.sndUna != sf.sndNxt {
                if let o = sf.outstanding.last { try await send(o.bytes, subflow: sf, label: "fin (retransmission)") }
            }
        }
        record.facts.subflowClosed = live.allSatisfy { $0.finReceived && $0.sndUna == $0.sndNxt }
    }

    func fastClose(_ sf: Subflow) async throws {
        closing = true
        guard let rk = remoteKey else { return }
        record.facts.fastCloseSent = try await send(sf.segment(flags: .ack, options: [.mptcp(.fastClose(MPFastClose(receiverKey: rk.rawValue)))]),
                                              subflow: sf, label: "mp_fastclose")
        try await pump(until: network.now() + config.timeout * 2) { sf.reset }
        if sf.reset { record.facts.fastCloseAnswered = record.facts.resets.last }
        for s in subflows where !s.reset { try await sendReset(s) }
    }

    /// Resets a subflow; `reason` adds MP_TCPRST (RFC 8684 §3.6) with that reason code.
    func sendReset(_ sf: Subflow, reason: MPTCPReset.Reason? = nil) async throws {
        let options: [TCPOption] = reason.map { [.mptcp(.reset(MPTCPReset(reason: $0.rawValue)))] } ?? []
        try await send(sf.segment(flags: [.rst, .ack], options: options), subflow: sf, label: reason == nil ? "rst" : "rst (mp_tcprst \(reason!.rawValue))")
        sf.reset = true
    }

    // MARK: MP_JOIN

    func openJoin() async throws -> Subflow? {
        guard let rk = remoteKey else { return nil }
        record.facts.joinAttempted = true
        let sf = Subflow(id: 1, kind: .join, local: config.joinSource ?? config.source, localPort: config.effectiveJoinPort,
                         remote: config.target, remotePort: config.destinationPort, iss: initialSequenceNumber())
        subflows.append(sf)
        let nonce = config.joinNonce ?? UInt32.random(in: 0...UInt32.max)
        let token = try rk.token(version).rawValue
        let join = MPJoin(flags: 0, addressID: config.joinSource == nil ? 0 : 1, stage: .syn(receiverToken: token, senderNonce: nonce))
        let syn = try sf.segment(flags: .syn, options: [.maximumSegmentSize(1400), .mptcp(.join(join))])
        let outcome = try await handshake(sf, syn: syn, label: "join syn", synPackets: { record.facts.joinSynPackets.append($0) })
        record.facts.joinOutcome = outcome
        switch outcome {
        case .reset(let i):
            record.facts.joinReset = (i, resetReason(i))
            return nil
        case .noAnswer, .unreachable:
            return nil
        case .synAck(let i):
            let seg = record.packets[i].packet.tcp!
            record.facts.joinSynAckNOPRun = seg.header.options.longestNOPRun
            var peer: (UInt64, UInt32)?
            for m in seg.header.options.mptcp { if case .join(let j) = m, case .synAck(let h, let n) = j.stage { peer = (h, n) } }
            // RFC 8684 §3.2: a SYN/ACK without MP_JOIN or with a wrong HMAC closes the subflow
            // with a RST carrying MP_TCPRST "MPTCP specific error".
            guard let (theirHMAC, theirNonce) = peer else {
                try await sendReset(sf, reason: .mptcpSpecific)
                return nil
            }
            record.facts.joinSynAckHasJoin = true
            let expected = try MPTCPHMAC.joinSynAck(version, responderKey: rk, initiatorKey: localKey, responderNonce: theirNonce, initiatorNonce: nonce)
            record.facts.joinHMACValid = expected == theirHMAC
            guard expected == theirHMAC else {
                try await sendReset(sf, reason: .mptcpSpecific)
                return nil
            }
            let hmac = try MPTCPHMAC.joinAck(version, initiatorKey: localKey, responderKey: rk, initiatorNonce: nonce, responderNonce: theirNonce)
            sf.established = true
            let ack = try sf.segment(flags: .ack, options: [.mptcp(.join(MPJoin(stage: .ack(hmac: hmac))))])
            // RFC 8684 §3.2: the third ACK is repeated until the peer's ACK (the fourth) arrives.
            var rto = config.timeout
            for attempt in 0...config.retries {
                let before = record.packets.count
                try await send(ack, subflow: sf, label: attempt == 0 ? "join third ack" : "join third ack (retransmission)")
                try await pump(until: network.now() + rto) {
                    if sf.reset { return true }
                    return self.record.packets[before...].contains { $0.direction == .in && $0.subflow == sf.id && !($0.packet.tcp?.header.flags.contains(.syn) ?? true) }
                }
                if sf.reset {
                    if let r = record.facts.resets.last { record.facts.joinReset = (r, resetReason(r)) }
                    return nil
                }
                if let fourth = record.packets[before...].first(where: { $0.direction == .in && $0.subflow == sf.id && !($0.packet.tcp?.header.flags.contains(.syn) ?? true) }) {
                    record.facts.joinFourthAck = fourth.index
                    return sf
                }
                rto *= 2
            }
            return nil
        }
    }

    func resetReason(_ i: Int) -> UInt8? {
        for m in record.packets[i].packet.tcp?.header.options.mptcp ?? [] { if case .reset(let r) = m { return r.reason } }
        return nil
    }

    // MARK: ADD_ADDR

    func addAddress(_ sf: Subflow) async throws {
        guard let rk = remoteKey else { return }
        let address = config.joinSource ?? config.source
        let hmac = try MPTCPHMAC.addAddr(senderKey: localKey, peerKey: rk, addressID: addAddrID, address: address.bytes, port: nil)
        let option = AddAddress(encoding: .v1, addressID: addAddrID, address: address, hmac: hmac)
        var rto = config.timeout
        for attempt in 0...config.retries {
            record.facts.addAddrSent.append(try await send(sf.segment(flags: .ack, options: [.mptcp(.addAddress(option))] + dataAckOption()),
                                                     subflow: sf, label: attempt == 0 ? "add_addr" : "add_addr (retransmission)"))
            try await pump(until: network.now() + rto) { self.record.facts.addAddrEcho != nil || sf.reset }
            if record.facts.addAddrEcho != nil || sf.reset { return }
            rto *= 2
        }
        // No echo: did our ADD_ADDR get lost, or did it arrive without the option? Copies that
        // expire on the way show, in the routers' quotes, where the option disappeared.
        if config.inspectPath, let d = record.facts.pathDistance, d > 1, let first = record.facts.addAddrSent.first {
            record.facts.inspections.append(try await inspect(packet: first, label: "add-addr", maxTTL: d - 1))
        }
    }

    // MARK: Locating a fallback

    /// After a fallback on the data: TTL-limited copies of the third ACK and the first data segment
    /// show where their MPTCP options disappeared (when routers after the box quote them).
    func locateFallback(_ sf: Subflow) async throws {
        guard config.inspectPath, record.facts.versionUsed != nil, let d = record.facts.pathDistance, d > 1 else { return }
        if let t = record.facts.thirdAckPacket { record.facts.inspections.append(try await inspect(packet: t, label: "third-ack", maxTTL: d - 1)) }
        if let data = record.packets.first(where: { $0.direction == .out && $0.subflow == sf.id && $0.label.hasPrefix("data") }) {
            record.facts.inspections.append(try await inspect(packet: data.index, label: "data", maxTTL: d - 1))
        }
    }

    /// Sends copies of a recorded packet with TTL 1...maxTTL at once and reads the quotes.
    func inspect(packet index: Int, label: String, maxTTL: Int) async throws -> Inspection {
        let original = record.packets[index].packet
        guard let seg = original.tcp else { return Inspection(segment: label, hops: []) }
        let copies = PathInspection.copies(of: original, maxTTL: maxTTL)
        guard let top = copies.last?.ttl else { return Inspection(segment: label, hops: []) }
        inbox.removeAll()
        for c in copies {
            try await send(c.packet.serialized(finalize: true), subflow: nil, label: "inspect \(label) ttl \(c.ttl)")
        }
        var views: [Int: HopView] = [:]
        try await pump(until: network.now() + config.timeout) { PathInspection.collect(seg, from: self.inbox, top: top, into: &views) }
        return PathInspection.inspection(segment: label, sent: seg, quotes: inbox, maxTTL: top)
    }

    /// Sends an ICMP echo with the SYN/ACK's distance as TTL: if it expires, a box before the server answered.
    func proxyCheck() async throws {
        guard let d = record.facts.pathDistance else { return }
        let id = config.sourcePort, seq = UInt16(truncatingIfNeeded: d)
        let icmp: ICMPMessage, ip: IPHeader
        switch (config.source, config.target) {
        case let (.v4(s), .v4(t)):
            icmp = ICMPMessage(family: .v4, type: ICMPv4Type.echoRequest, code: 0, rest: UInt32(id) << 16 | UInt32(seq), body: Array("mptracebox".utf8))
            ip = .v4(IPv4Header(source: s, destination: t, protocol: .icmp, ttl: UInt8(min(d, 255))))
        case let (.v6(s), .v6(t)):
            icmp = ICMPMessage(family: .v6, type: ICMPv6Type.echoRequest, code: 0, rest: UInt32(id) << 16 | UInt32(seq), body: Array("mptracebox".utf8))
            ip = .v6(IPv6Header(source: s, destination: t, nextHeader: .icmpv6, hopLimit: UInt8(min(d, 255))))
        default: return
        }
        let bytes = try IPPacket(ip: ip, transport: .icmp(icmp)).serialized(finalize: true)
        for _ in 0...min(config.retries, 1) {
            inbox.removeAll()
            try await send(bytes, subflow: nil, label: "proxy check echo ttl \(d)")
            var done = false
            try await pump(until: network.now() + config.timeout) {
                for (i, p) in self.inbox {
                    guard let m = p.icmp else { continue }
                    let reply = (m.family == .v4 && m.type == ICMPv4Type.echoReply) || (m.family == .v6 && m.type == ICMPv6Type.echoReply)
                    if reply, p.ip.source == self.config.target, m.rest == icmp.rest { done = true; return true }
                    if m.isError, let inner = m.quote?.packet, inner.ip.destination == self.config.target,
                       case .icmp(let q) = inner.transport, q.rest == icmp.rest {
                        let expired = (m.family == .v4 && m.type == ICMPv4Type.timeExceeded) || (m.family == .v6 && m.type == ICMPv6Type.timeExceeded)
                        if expired { self.record.facts.proxyHop = d; self.record.facts.proxyEvidence = i }
                        done = true
                        return true
                    }
                }
                return false
            }
            if done { return }
        }
    }

    // MARK: I/O and dispatch

    @discardableResult
    func send(_ bytes: [UInt8], subflow: Subflow?, label: String) async throws -> Int {
        do { try await network.send(bytes) } catch { throw SessionError.network("\(error)") }
        let packet = (try? IPPacket.parse(bytes)) ?? IPPacket(ip: .v4(IPv4Header(source: IPv4Address(rawValue: 0), destination: IPv4Address(rawValue: 0))), transport: .other(bytes))
        let i = record.packets.count
        record.packets.append(RecordedPacket(index: i, time: network.now(), direction: .out, subflow: subflow?.id, packet: packet, label: label))
        return i
    }

    /// Reads packets until `done` holds or `deadline` passes; every packet is dispatched first.
    func pump(until deadline: Double, _ done: () -> Bool) async throws {
        while !done() {
            guard network.now() < deadline else { return }
            let r: ReceivedPacket?
            do { r = try await network.receive(until: deadline) } catch { throw SessionError.network("\(error)") }
            guard let r else { return }
            try await dispatch(r)
        }
    }

    func dispatch(_ r: ReceivedPacket) async throws {
        guard let p = try? IPPacket.parse(r.bytes) else { return }
        let i = record.packets.count
        if case .tcp(let seg) = p.transport, let sf = subflows.first(where: { $0.matches(p, seg) }) {
            record.packets.append(RecordedPacket(index: i, time: r.time, direction: .in, subflow: sf.id, packet: p, label: label(seg)))
            try await handle(sf, seg, index: i)
            return
        }
        if case .tcp = p.transport { return }   // another flow of the same server: not ours
        if case .icmp(let m) = p.transport {
            // Only ICMP about our own packets (or echo replies to our checks) is kept.
            let ours: Bool
            if m.isError, let inner = m.quote?.packet {
                ours = inner.ip.source == config.source || inner.ip.source == config.joinSource
            } else {
                ours = p.ip.source == config.target
            }
            guard ours else { return }
            record.packets.append(RecordedPacket(index: i, time: r.time, direction: .in, subflow: nil, packet: p, label: "icmp type \(m.type) code \(m.code)"))
            inbox.append((i, p))
        }
    }

    func label(_ seg: TCPSegment) -> String {
        let f = seg.header.flags
        if f.contains(.rst) { return "rst" }
        if f.contains(.syn) { return "syn/ack" }
        if f.contains(.fin) { return "fin" }
        return seg.payload.isEmpty ? "ack" : "data"
    }

    /// An ICMP destination-unreachable about this subflow's SYN.
    func unreachable(for sf: Subflow) -> HandshakeOutcome? {
        for (i, p) in inbox {
            guard let m = p.icmp, let inner = m.quote?.packet else { continue }
            let isUnreach = (m.family == .v4 && m.type == ICMPv4Type.destinationUnreachable) || (m.family == .v6 && m.type == ICMPv6Type.destinationUnreachable)
            guard isUnreach else { continue }
            var ports: (UInt16, UInt16)?
            switch inner.transport {
            case .tcp(let s): ports = (s.header.sourcePort, s.header.destinationPort)
            case .partialTCP(let q): ports = (q.sourcePort, q.destinationPort)
            default: break
            }
            if let (s, d) = ports, s == sf.localPort, d == sf.remotePort { return .unreachable(packet: i, code: m.code) }
        }
        return nil
    }

    /// Everything the client does on a segment of one of its subflows.
    func handle(_ sf: Subflow, _ seg: TCPSegment, index i: Int) async throws {
        let h = seg.header
        if h.flags.contains(.rst) {
            if !sf.synAcked {
                guard h.acknowledgmentNumber == sf.iss &+ 1 || !h.flags.contains(.ack) else { return }
                sf.handshakeOutcome = .reset(packet: i)
            }
            sf.reset = true
            record.facts.resets.append(i)
            if let reason = resetReason(i) { record.facts.mptcpReset = (i, reason, sf.id) }
            return
        }
        if h.flags.contains(.syn) {
            guard h.flags.contains(.ack), h.acknowledgmentNumber == sf.iss &+ 1 else { return }
            if !sf.synAcked {
                sf.synAcked = true
                sf.irs = h.sequenceNumber
                sf.rcvNxt = h.sequenceNumber &+ 1
                sf.sndUna = sf.iss &+ 1
                sf.sndNxt = sf.iss &+ 1
                sf.handshakeOutcome = .synAck(packet: i)
            } else if sf.established {
                // Our third ACK was lost: the SYN/ACK comes again; acknowledge it again.
                let third = record.packets.last { $0.direction == .out && $0.subflow == sf.id && $0.label.contains("third ack") }
                if let t = third, let bytes = try? t.packet.serialized() { try await send(bytes, subflow: sf, label: t.label + " (again)") }
            }
            return
        }
        if !sf.synAcked {
            // RFC 793 (SYN-SENT): an ACK of something we never sent comes from an older
            // connection of this four-tuple the server still holds (an earlier run killed
            // mid-session, a TIME_WAIT); reset it with SEQ=SEG.ACK, as a kernel would, and retry.
            if h.flags.contains(.ack), h.acknowledgmentNumber != sf.iss &+ 1, sf.staleConnectionResets.count < 4 {
                sf.staleConnectionResets.append(i)
                try await send(sf.segment(flags: .rst, seq: h.acknowledgmentNumber, options: []), subflow: sf, label: "rst (an old connection of this four-tuple)")
            }
            return
        }
        var needAck = false
        // MPTCP as it stood when this segment arrived (its own ACK part may end it below).
        let wasMPTCP = mptcp

        if h.flags.contains(.ack), seqGT(h.acknowledgmentNumber, sf.sndUna), seqLE(h.acknowledgmentNumber, sf.sndNxt) {
            sf.sndUna = h.acknowledgmentNumber
            // RFC 8684 §3.7: data acknowledged without any DSS ever seen means the server fell back.
            // An MPTCP peer puts a DSS on every ACK (RFC 8684 §3.3); one without covers our data only after a fallback.
            if mptcp && !h.options.mptcp.contains(where: { switch $0 { case .dss, .fail: return true; default: return false } })
                && seqGT(h.acknowledgmentNumber, sf.iss &+ 1) && sf.kind == .initial {
                record.facts.dataAckedWithoutDSS = i
                mptcp = false
            }
        }

        if record.facts.thirdAckPacket != nil, h.options.longestNOPRun >= 4, record.facts.serverNOPRun == nil {
            record.facts.serverNOPRun = i
        }
        if !closing, let probe = record.facts.ackProbeReply, i > probe, sf.kind == .initial, record.facts.serverPlainSegment == nil,
           h.options.mptcp.isEmpty, h.options.longestNOPRun < 4 {
            record.facts.serverPlainSegment = i
        }

        for m in h.options.mptcp {
            switch m {
            case .dss(let d):
                if record.facts.firstServerDSS == nil { record.facts.firstServerDSS = i }
                if let a = d.dataACK { handleDataAck(a, width: d.dataACKWidth, packet: i) }
                if let map = d.mapping {
                    let dsn = d.dsnWidth == 4 ? expand32(map.dataSequenceNumber, near: remoteIDSN &+ 1 &+ UInt64(received.count)) : map.dataSequenceNumber
                    var m2 = map
                    m2.dataSequenceNumber = dsn
                    if map.dataLevelLength == 0 {
                        record.facts.infiniteMapping = record.facts.infiniteMapping ?? i
                        sf.infiniteFrom = (dsn, map.subflowSequenceNumber)
                    } else {
                        sf.mappings.append((m2, d.isDataFIN, i))
                    }
                    record.facts.receivedMappings += 1
                    if d.isDataFIN { needAck = true }
                }
            case .fail(let f):
                record.facts.mpFail = record.facts.mpFail ?? i
                // RFC 8684 §3.7: on a single subflow, answer with MP_FAIL and continue without mappings.
                if mptcp {
                    try await send(sf.segment(flags: .ack, options: [.mptcp(.fail(MPFail(dataSequenceNumber: f.dataSequenceNumber)))]), subflow: sf, label: "mp_fail (reply)")
                    mptcp = false
                }
            case .addAddress(let a):
                if a.isEcho {
                    if a.addressID == addAddrID { record.facts.addAddrEcho = record.facts.addAddrEcho ?? i }
                } else {
                    var valid: Bool?
                    if let hm = a.hmac, let rk = remoteKey {
                        valid = (try? MPTCPHMAC.addAddr(senderKey: rk, peerKey: localKey, addressID: a.addressID, address: a.address.bytes, port: a.port)) == hm
                    }
                    record.facts.serverAddAddr.append((i, a.addressID, a.address, valid))
                    var echo = AddAddress(encoding: a.encoding, echo: true, addressID: a.addressID, address: a.address, port: a.port)
                    echo.hmac = nil
                    if a.encoding == .v1 {
                        try await send(sf.segment(flags: .ack, options: [.mptcp(.addAddress(echo))] + dataAckOption()), subflow: sf, label: "add_addr echo")
                    }
                }
            case .removeAddress:
                record.facts.serverRemoveAddr.append(i)
            default:
                break
            }
        }

        // Payload and FIN.
        let seq = h.sequenceNumber
        if !seg.payload.isEmpty {
            needAck = true
            let hasDSS = h.options.mptcp.contains { if case .dss = $0 { return true }; return false }
            if mptcp, record.facts.firstServerDSS == nil, record.facts.serverDataWithoutDSS == nil, !hasDSS {
                record.facts.serverDataWithoutDSS = i
            }
            // New data that no mapping covers, from a server whose DSS we saw: on the only subflow,
            // RFC 8684 §3.7 says fall back to TCP (the data stream is the subflow's bytes).
            if wasMPTCP, !hasDSS, sf.kind == .initial, sf.infiniteFrom == nil, record.facts.firstServerDSS != nil,
               seqGE(seq, sf.rcvNxt), !sf.mapped(relative: seq &- sf.irs) {
                record.facts.serverDataWithoutMapping = record.facts.serverDataWithoutMapping ?? i
                if subflows.filter({ $0.established && !$0.reset }).count == 1 { mptcp = false }
            }
            if seqLE(seq, sf.rcvNxt) {
                let skip = Int(sf.rcvNxt &- seq)
                if skip < seg.payload.count { accept(sf, Array(seg.payload[skip...])) }
            } else if seqLT(seq, sf.rcvNxt &+ 1_000_000) {
                sf.pending[seq] = seg.payload
            }
            while let next = sf.pending.removeValue(forKey: sf.rcvNxt) { accept(sf, next) }
        }
        if h.flags.contains(.fin), seq &+ UInt32(seg.payload.count) == sf.rcvNxt, !sf.finReceived {
            sf.finReceived = true
            sf.rcvNxt &+= 1
            needAck = true
        }
        try await deliver(sf)
        if needAck && sf.established && !sf.reset {
            try await send(sf.segment(flags: .ack, options: dataAckOption()), subflow: sf, label: "ack")
        }
    }

    func accept(_ sf: Subflow, _ bytes: [UInt8]) {
        sf.stream += bytes
        sf.rcvNxt &+= UInt32(bytes.count)
    }

    /// Moves mapped subflow bytes to the data level, checking DSS checksums.
    func deliver(_ sf: Subflow) async throws {
        if let inf = sf.infiniteFrom {
            // After an infinite mapping the subflow's bytes are the data stream.
            let start = Int(inf.ssn) - 1
            if start >= 0, start < sf.stream.count {
                store(at: Int(inf.dsn &- remoteIDSN &- 1), Array(sf.stream[start...]))
            }
            return
        }
        var kept: [(mapping: DSS.Mapping, fin: Bool, packet: Int)] = []
        for entry in sf.mappings {
            let m = entry.mapping
            let dataBytes = Int(m.dataLevelLength) - (entry.fin ? 1 : 0)
            let rel = Int(m.dataSequenceNumber &- remoteIDSN &- 1)
            if entry.fin && dataBytes == 0 {
                remoteDataFin = rel
                record.facts.serverDataFin = record.facts.serverDataFin ?? entry.packet
                continue
            }
            let start = Int(m.subflowSequenceNumber) - 1
            guard start >= 0 else { continue }
            guard sf.stream.count >= start + dataBytes else { kept.append(entry); continue }
            let bytes = Array(sf.stream[start..<(start + dataBytes)])
            if checksums, let c = m.checksum {
                let computed = Checksum.dss(dataSequenceNumber: m.dataSequenceNumber, subflowSequenceNumber: m.subflowSequenceNumber,
                                            dataLevelLength: m.dataLevelLength, payload: bytes)
                if computed != c {
                    record.facts.checksumErrors.append(entry.packet)
                    // RFC 8684 §3.7: a checksum failure on the only subflow: MP_FAIL, then fall back.
                    if mptcp {
                        try await send(sf.segment(flags: .ack, options: [.mptcp(.fail(MPFail(dataSequenceNumber: m.dataSequenceNumber)))]), subflow: sf, label: "mp_fail")
                        mptcp = false
                    }
                    continue
                }
            }
            store(at: rel, bytes)
            if entry.fin {
                remoteDataFin = rel + dataBytes
                record.facts.serverDataFin = record.facts.serverDataFin ?? entry.packet
            }
        }
        sf.mappings = kept
    }

    func store(at rel: Int, _ bytes: [UInt8]) {
        guard rel >= 0 else { return }
        if rel <= received.count {
            let skip = received.count - rel
            if skip < bytes.count { received += bytes[skip...] }
        } else {
            receivedPending[rel] = bytes
        }
        while let (k, v) = receivedPending.first(where: { $0.key <= received.count }) {
            receivedPending[k] = nil
            let skip = received.count - k
            if skip < v.count { received += v[skip...] }
        }
    }

    func handleDataAck(_ raw: UInt64, width: Int, packet i: Int) {
        let base = localIDSN &+ 1
        let value = width == 4 ? expand32(raw, near: base &+ UInt64(dataAcked)) : raw
        let rel = Int64(bitPattern: value &- base)
        let limit = Int64(dataSent) + (dataFinSent ? 1 : 0)
        if rel < 0 || rel > limit {
            // An acknowledgment of data never sent: a middlebox or a broken peer.
            if rel > limit { record.facts.invalidDataAck = record.facts.invalidDataAck ?? i }
            return
        }
        dataAcked = max(dataAcked, Int(rel))
    }

    /// The 64-bit value whose low 32 bits are `v`, nearest to `near`.
    func expand32(_ v: UInt64, near: UInt64) -> UInt64 {
        let low = v & 0xffff_ffff
        var candidate = (near & ~0xffff_ffff) | low
        if candidate > near &+ 0x8000_0000 { candidate &-= 0x1_0000_0000 } else if candidate &+ 0x8000_0000 < near { candidate &+= 0x1_0000_0000 }
        return candidate
    }
}

extension HandshakeOutcome {
    var isSynAck: Bool { if case .synAck = self { return true }; return false }
}
