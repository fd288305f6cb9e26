import Wire
import Report

/// The session's JSON document (schema mptracebox.session/1) and its terminal story.
public enum SessionReport {
    public static let schema = "mptracebox.session/1"

    static func evidenceJSON(_ e: [Evidence]) -> JSON {
        .array(e.map { JSON.compact([("packet", .optional($0.packet)), ("dir", $0.direction.map { .string($0.rawValue) } ?? .null), ("why", .string($0.why))]) })
    }

    static func verdictJSON(_ v: Verdict) -> [(String, JSON)] {
        var m: [(String, JSON)] = [("verdict", .string(v.id)), ("evidence", evidenceJSON(v.evidence))]
        if !v.detail.isEmpty { m.append(("detail", .object(v.detail.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))) }
        return m
    }

    public static func json(_ r: SessionRecord, _ v: SessionVerdicts) -> JSON {
        let c = r.configuration, f = r.facts
        var subflows: [JSON] = [.object([("kind", "initial"), ("local", .string("\(c.source)")), ("sport", .number(c.sourcePort))] + verdictJSON(v.initial))]
        if let j = v.join {
            subflows.append(.object([("kind", "join"), ("local", .string("\(c.joinSource ?? c.source)")), ("sport", .number(c.effectiveJoinPort))] + verdictJSON(j)))
        }
        var doc: [(String, JSON)] = [
            ("schema", .string(schema)),
            ("target", .string("\(c.target)")),
            ("port", .number(c.destinationPort)),
            ("mode", "crafted"),
            ("version", f.versionUsed.map { .number($0) } ?? .null),
            ("version_sent", .number(f.versionSent)),
        ]
        doc += verdictJSON(v.session)
        doc.append(("subflows", .array(subflows)))
        if let a = v.addAddress { doc.append(("add_addr", .object(verdictJSON(a)))) }
        doc.append(("checksums", .bool(f.checksums)))
        doc.append(("payload", .string(v.payloadChanged == nil ? (f.echoMatches == true ? "intact" : "unchecked") : "changed")))
        if let p = v.payloadChanged { doc.append(("payload_evidence", evidenceJSON([p]))) }
        doc.append(("counters", .object([
            ("bytes_sent", .number(f.bytesSent)),
            ("bytes_acked_data_level", .number(f.bytesAckedDataLevel)),
            ("bytes_acked_subflow", .number(f.bytesAckedSubflow)),
            ("bytes_received", .number(f.received.count)),
            ("mappings_received", .number(f.receivedMappings)),
            ("checksum_errors", .number(f.checksumErrors.count)),
            ("join_bytes_sent", .number(f.joinBytesSent)),
            ("packets", .number(r.packets.count)),
        ])))
        var signals: [(String, JSON)] = []
        if let i = f.mpFail { signals.append(("mp_fail", .number(i))) }
        if let i = f.infiniteMapping { signals.append(("infinite_mapping", .number(i))) }
        if let rst = f.mptcpReset { signals.append(("mp_tcprst", .object([("packet", .number(rst.packet)), ("reason", .number(rst.reason)), ("subflow", .number(rst.subflow))]))) }
        if !f.serverAddAddr.isEmpty {
            signals.append(("server_add_addr", .array(f.serverAddAddr.map {
                JSON.compact([("packet", .number($0.packet)), ("id", .number($0.id)), ("address", .string("\($0.address)")),
                              ("hmac_valid", $0.hmacValid.map { .bool($0) } ?? .null)])
            })))
        }
        if !f.serverRemoveAddr.isEmpty { signals.append(("server_remove_addr", .array(f.serverRemoveAddr.map { .number($0) }))) }
        if let i = f.prioritySent { signals.append(("mp_prio_sent", .number(i))) }
        if let i = f.fastCloseSent { signals.append(("mp_fastclose_sent", .number(i))) }
        if let i = f.fastCloseAnswered { signals.append(("mp_fastclose_answered", .number(i))) }
        doc.append(("signals", .object(signals)))
        if !f.inspections.isEmpty {
            doc.append(("inspections", .array(f.inspections.map(inspectionJSON))))
        }
        doc.append(("close", .object([("data_fin_acked", .bool(f.dataFinAcked)), ("server_data_fin", .bool(f.serverDataFin != nil)),
                                      ("subflows_closed", .bool(f.subflowClosed))])))
        doc.append(("duration_ms", .double((r.duration * 1000).rounded() )))
        doc.append(("packets", .array(r.packets.map(packetJSON))))
        return .object(doc)
    }

    /// One path inspection: per hop the router, the quote's packet number and the option's state.
    static func inspectionJSON(_ insp: Inspection) -> JSON {
        .object([("segment", .string(insp.segment)), ("hops", .array(insp.hops.map {
            JSON.compact([("ttl", .number($0.ttl)), ("address", $0.router.map { .string("\($0)") } ?? .null),
                          ("packet", .optional($0.packet)), ("state", .string($0.state.rawValue))])
        }))])
    }

    static func packetJSON(_ p: RecordedPacket) -> JSON {
        var m: [(String, JSON)] = [("n", .number(p.index)), ("dir", .string(p.direction.rawValue)), ("label", .string(p.label))]
        if let s = p.subflow { m.append(("subflow", .number(s))) }
        if let t = p.packet.tcp {
            m.append(("flags", .string(t.header.flags.description)))
            m.append(("seq", .number(t.header.sequenceNumber)))
            m.append(("ack", .number(t.header.acknowledgmentNumber)))
            if !t.payload.isEmpty { m.append(("len", .number(t.payload.count))) }
            let mp = t.header.options.options.filter { $0.kind == .mptcp }
            if !mp.isEmpty { m.append(("mptcp", .array(mp.map { .string(WireText.option($0)) }))) }
        } else if let i = p.packet.icmp {
            m.append(("icmp", .string("type \(i.type) code \(i.code) from \(p.packet.ip.source)")))
        }
        return .object(m)
    }

    /// The terminal story: the steps, ok or not and why, then the verdicts.
    public static func text(_ r: SessionRecord, _ v: SessionVerdicts) -> String {
        let c = r.configuration, f = r.facts
        var lines = ["MPTCP session to \(c.target) port \(c.destinationPort) from \(c.source):\(c.sourcePort) (crafted, v\(f.versionSent) SYN, checksums \(c.checksum ? "requested" : "not requested"))"]
        func step(_ ok: Bool?, _ s: String) { lines.append("  [\(ok == nil ? " ?? " : ok! ? " ok " : "FAIL")] \(s)") }
        switch f.handshake {
        case .synAck(let i):
            let mpc = f.synAckMPCapable
            step(f.versionUsed != nil, "SYN/ACK (#\(i))" + (mpc.map { " with MP_CAPABLE v\($0.version) flags 0x\(String($0.flags, radix: 16))" + ($0.senderKey != nil ? " and the server's key" : " without a key") } ?? " without MP_CAPABLE"))
        case .reset(let i): step(false, "SYN answered with RST (#\(i))")
        case .unreachable(let i, let code): step(false, "ICMP unreachable code \(code) (#\(i))")
        case .noAnswer: step(false, "no answer to \(f.synPackets.count) SYNs" + (f.plainSYN?.isSynAck == true ? "; a plain SYN was answered" : ""))
        }
        if f.versionUsed != nil {
            step(true, "third ACK with both keys (#\(f.thirdAckPacket ?? -1)); checksums \(f.checksums ? "on" : "off")")
            if let p = f.ackProbeReply { step(f.ackProbeReplyHasDSS, "server ACK \(f.ackProbeReplyHasDSS ? "with" : "without") DSS (#\(p))") }
            step(f.bytesAckedDataLevel >= f.bytesSent && f.bytesSent > 0, "data: \(f.bytesSent) bytes sent, \(f.bytesAckedDataLevel) acknowledged at the data level, \(f.bytesAckedSubflow) at the subflow level")
            step(f.echoMatches, "received \(f.received.count) bytes in \(f.receivedMappings) mapping(s)" + (f.echoMatches == true ? ", equal to what was sent" : f.echoMatches == false ? ", NOT equal to what was sent" : ""))
            if let i = f.mpFail { step(false, "MP_FAIL from the server (#\(i))") }
            if let i = f.infiniteMapping { step(false, "infinite mapping from the server (#\(i))") }
            if let j = v.join { step(j.id == "join.ok", "MP_JOIN from \(c.joinSource ?? c.source):\(c.effectiveJoinPort): \(j.id)") }
            if let a = v.addAddress { step(a.id == "add-addr.ok", "ADD_ADDR: \(a.id)") }
            for a in f.serverAddAddr { step(a.hmacValid, "server ADD_ADDR id \(a.id) \(a.address) (#\(a.packet))" + (a.hmacValid == false ? ": HMAC does not match" : "")) }
            step(f.dataFinAcked && f.subflowClosed, "close: DATA_FIN \(f.dataFinAcked ? "acknowledged" : "not acknowledged"), server DATA_FIN \(f.serverDataFin != nil ? "received" : "not seen"), subflows \(f.subflowClosed ? "closed" : "not closed cleanly")")
        }
        for insp in f.inspections {
            let hops = insp.hops.map { "\($0.ttl):\($0.state.rawValue)" }.joined(separator: " ")
            lines.append("  path check of the \(insp.segment): \(hops)")
        }
        lines.append("verdict: \(v.session.id)")
        for e in v.session.evidence { lines.append("  - " + (e.packet.map { "#\($0) " } ?? "") + e.why) }
        if let p = v.payloadChanged { lines.append("payload changed: \(p.why)") }
        return lines.joined(separator: "\n")
    }
}
