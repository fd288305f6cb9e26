import Wire

/// A verdict id (docs/sessions.md, /work/shared/contract.md) with the evidence behind it.
public struct Verdict: Sendable, Hashable {
    public var id: String
    public var evidence: [Evidence]
    /// Extra facts (e.g. "direction": "client-to-server", "hop": "2", "reason": "6").
    public var detail: [String: String]

    public init(_ id: String, _ evidence: [Evidence] = [], detail: [String: String] = [:]) {
        self.id = id
        self.evidence = evidence
        self.detail = detail
    }
}

/// All verdicts of one session.
public struct SessionVerdicts: Sendable {
    public var session: Verdict
    public var initial: Verdict
    public var join: Verdict?
    public var addAddress: Verdict?
    /// Payload changed on the way (the echo differs) although nothing at the MPTCP level said so.
    public var payloadChanged: Evidence?
}

/// From a recorded session to verdicts: a pure function of the facts and packets.
public enum SessionClassifier {
    public static func classify(_ r: SessionRecord) -> SessionVerdicts {
        let f = r.facts
        let initial = initialVerdict(r)
        var out = SessionVerdicts(session: initial, initial: initial, join: nil, addAddress: nil)
        if f.joinAttempted { out.join = joinVerdict(r) }
        if !f.addAddrSent.isEmpty { out.addAddress = addAddrVerdict(r) }
        if f.echoMatches == false, r.configuration.expectEcho {
            let firstDiff = zip(f.received, r.configuration.payload).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            out.payloadChanged = Evidence(packet: nil, why: firstDiff.map { "the echo differs from what was sent from byte \($0) on" }
                                          ?? "the echo has \(f.received.count) of \(r.configuration.payload.count) bytes")
        }
        return out
    }

    static func ev(_ i: Int?, _ r: SessionRecord, _ why: String) -> Evidence {
        Evidence(packet: i, direction: i.map { r.packets[$0].direction }, why: why)
    }

    static func initialVerdict(_ r: SessionRecord) -> Verdict {
        let f = r.facts
        let syns = f.synPackets.map { ev($0, r, "SYN with MP_CAPABLE") }
        switch f.handshake {
        case .reset(let i):
            return Verdict("refused", [ev(i, r, "the SYN was answered with RST: nothing listens on the port")])
        case .unreachable(let i, let code):
            return Verdict("unreachable", [ev(i, r, "ICMP destination unreachable (code \(code)) about our SYN")])
        case .noAnswer:
            switch f.plainSYN {
            case .synAck(let i)?:
                return Verdict("fallback.syn-dropped", syns.prefix(1) + [
                    Evidence(packet: nil, why: "\(f.synPackets.count) SYNs with MP_CAPABLE got no answer"),
                    ev(i, r, "the same SYN without MP_CAPABLE was answered with SYN/ACK")])
            case .reset(let i)?:
                return Verdict("fallback.syn-dropped", syns.prefix(1) + [
                    Evidence(packet: nil, why: "\(f.synPackets.count) SYNs with MP_CAPABLE got no answer"),
                    ev(i, r, "the same SYN without MP_CAPABLE was answered (RST)")])
            default:
                return Verdict("timeout", [Evidence(packet: nil, why: "no answer to \(f.synPackets.count) SYNs, with or without MP_CAPABLE")])
            }
        case .synAck(let synAck):
            if f.synAckEchoed {
                return Verdict("fallback.echoed", [ev(synAck, r, "the SYN/ACK's MP_CAPABLE is a copy of ours (no server key, or our own key)")])
            }
            // A box that answers our SYN with an MP_CAPABLE of its own making cannot carry MPTCP on:
            // the SYN/ACK came from before the server and the "session" was reset without any DSS.
            if let hop = f.proxyHop, f.synAckMPCapable != nil, f.firstServerDSS == nil, let rst = f.resets.first {
                return Verdict("fallback.echoed", [
                    ev(synAck, r, "the SYN/ACK carries MP_CAPABLE with a key, but comes from \(hop) hop(s) away"),
                    ev(f.proxyEvidence, r, "an ICMP echo to the server with that TTL expired on the way: a box at hop \(hop) answered"),
                    ev(rst, r, "the connection was reset before any DSS: nothing behind that MP_CAPABLE speaks MPTCP")],
                    detail: ["hop": "\(hop)"])
            }
            if let hop = f.proxyHop {
                return Verdict("fallback.proxy", [
                    ev(synAck, r, "the SYN/ACK's TTL puts its sender \(hop) hop(s) away"),
                    ev(f.proxyEvidence, r, "an ICMP echo to the server with that TTL expired on the way: a box at hop \(hop) answered for the server")],
                    detail: ["hop": "\(hop)", "mptcp": f.versionUsed != nil ? "yes" : "no"])
            }
            guard let used = f.versionUsed else { return noMPTCPVerdict(r, synAck: synAck) }
            return mptcpVerdict(r, synAck: synAck, version: used)
        }
    }

    static func noMPTCPVerdict(_ r: SessionRecord, synAck: Int) -> Verdict {
        let f = r.facts
        if f.synAckMPCapable == nil && f.synAckNOPRun >= 4 {
            return Verdict("fallback.synack-stripped", [ev(synAck, r, "the SYN/ACK has no MP_CAPABLE but a run of \(f.synAckNOPRun) NOPs where an option was overwritten")])
        }
        if let insp = f.inspections.first(where: { $0.segment == "syn" }), let c = insp.firstChanged {
            var e = [ev(synAck, r, "the SYN/ACK has no MP_CAPABLE"),
                     ev(c.packet, r, "the quote from hop \(c.ttl) (\(c.router.map { "\($0)" } ?? "?")) shows our SYN's MP_CAPABLE \(c.state.rawValue)")]
            if let ok = insp.lastIntactBefore { e.append(ev(ok.packet, r, "hop \(ok.ttl) still quoted it intact")) }
            return Verdict("fallback.syn-stripped", e, detail: ["hop": "\(c.ttl)"])
        }
        if let problem = f.synAckFlagsProblem {
            return Verdict("fallback.not-mptcp-server", [ev(synAck, r, "the SYN/ACK's MP_CAPABLE cannot be used: \(problem)")])
        }
        var e = [ev(synAck, r, "the SYN/ACK carries no MP_CAPABLE and no sign of stripping (no NOP run)")]
        if let insp = f.inspections.first(where: { $0.segment == "syn" }) {
            let seen = insp.hops.filter { $0.state == .intact }.count
            e.append(Evidence(packet: nil, why: seen > 0 ? "\(seen) hop(s) quoted our SYN with MP_CAPABLE intact" : "no hop quoted our SYN: the path could not be checked"))
        }
        if let v0 = f.v0Retry {
            e.append(Evidence(packet: v0.packet, why: "a v0 SYN was answered without MP_CAPABLE too"))
        }
        return Verdict("fallback.not-mptcp-server", e)
    }

    static func mptcpVerdict(_ r: SessionRecord, synAck: Int, version: UInt8) -> Verdict {
        let f = r.facts
        var base = [ev(synAck, r, "the SYN/ACK carries the server's MP_CAPABLE v\(version) with its key")]
        if f.mpFail != nil || f.infiniteMapping != nil || !f.checksumErrors.isEmpty {
            var e = base
            if let i = f.mpFail { e.append(ev(i, r, "the server sent MP_FAIL: a DSS checksum failed (payload changed on the way)")) }
            if let i = f.infiniteMapping { e.append(ev(i, r, "the server switched to an infinite mapping (fallback)")) }
            for i in f.checksumErrors.prefix(3) { e.append(ev(i, r, "the DSS checksum of the server's data does not match its payload")) }
            if let rst = f.mptcpReset { e.append(ev(rst.packet, r, "MP_TCPRST reason \(rst.reason)")) }
            return Verdict("fallback.checksum", e, detail: ["checksums": f.checksums ? "on" : "off"])
        }
        let fellBack = f.dataAckedWithoutDSS != nil || f.serverDataWithoutMapping != nil || (f.firstServerDSS == nil && f.bytesSent > 0)
        if fellBack {
            if let i = f.dataAckedWithoutDSS {
                let nops = r.packets[i].packet.tcp?.header.options.longestNOPRun ?? 0
                base.append(ev(i, r, nops >= 4 ? "the server's ACK of our data arrives without DSS, with a run of \(nops) NOPs in its place"
                                              : "the server acknowledged our data without any DSS: it fell back to TCP"))
            }
            // With checksums on, a server that finds the payload changed falls back (infinite
            // mapping or plain ACKs); the echo shows the change.
            if f.checksums, f.echoMatches == false, f.ackProbeReplyHasDSS {
                return Verdict("fallback.checksum", base + [
                    ev(f.ackProbeReply, r, "before our data, the server's ACK carried a DSS: the handshake was fine"),
                    Evidence(packet: nil, why: "the data came back changed: the payload was rewritten on the way and the server's DSS checksum check failed")],
                    detail: ["checksums": "on"])
            }
            let thirdAck = f.inspections.first { $0.segment == "third-ack" }?.firstChanged
            let data = f.inspections.first { $0.segment == "data" }?.firstChanged
            if let probe = f.ackProbeReply {
                if f.ackProbeReplyHasDSS || f.ackProbeReplyNOPRun >= 4 || f.serverDataWithoutMapping != nil {
                    return dssStripped(r, base: base, probe: probe, data: data)
                }
                var e = base + [ev(probe, r, "the server's ACK to our third ACK carries no MPTCP option: it never took our keys")]
                if let t = thirdAck { e.append(ev(t.packet, r, "the quote from hop \(t.ttl) shows our third ACK's MP_CAPABLE \(t.state.rawValue)")) }
                return Verdict("fallback.ack-stripped", e, detail: thirdAck.map { ["hop": "\($0.ttl)"] } ?? [:])
            }
            if let t = thirdAck {
                return Verdict("fallback.ack-stripped", base + [ev(t.packet, r, "the quote from hop \(t.ttl) shows our third ACK's MP_CAPABLE \(t.state.rawValue)")], detail: ["hop": "\(t.ttl)"])
            }
            if data != nil || f.serverDataWithoutMapping != nil {
                return dssStripped(r, base: base, probe: nil, data: data)
            }
            return Verdict("unclear", base + [Evidence(packet: nil, why: "the server fell back after the handshake, but neither its answers nor the path showed why")])
        }
        if f.bytesAckedDataLevel < f.bytesSent || f.dataTimedOut {
            return Verdict("unclear", base + [Evidence(packet: nil, why: "only \(f.bytesAckedDataLevel) of \(f.bytesSent) bytes were acknowledged at the data level before the timeout")])
        }
        if let i = f.invalidDataAck {
            base.append(ev(i, r, "a Data ACK acknowledged data never sent"))
        }
        if let i = f.firstServerDSS { base.append(ev(i, r, "the server's segments carry DSS")) }
        base.append(Evidence(packet: nil, why: "all \(f.bytesSent) bytes acknowledged at the data level"))
        if f.dataFinAcked { base.append(Evidence(packet: nil, why: "our DATA_FIN was acknowledged")) }
        if let i = f.serverDataFin { base.append(ev(i, r, "the server's DATA_FIN")) }
        return Verdict("mptcp", base)
    }

    /// DSS lost after a good handshake, and in which direction: towards the server (its later
    /// segments are plain, it fell back on our data; or a quote shows our data's option gone),
    /// towards us (its segments arrive with a NOP run or without a mapping where its DSS was), or both.
    static func dssStripped(_ r: SessionRecord, base: [Evidence], probe: Int?, data: HopView?) -> Verdict {
        let f = r.facts
        var e = base
        var toServer = false, toClient = false
        if let probe {
            if f.ackProbeReplyHasDSS {
                e.append(ev(probe, r, "before our data, the server's ACK carried a DSS: it had our keys from the third ACK"))
            } else if f.ackProbeReplyNOPRun >= 4 {
                toClient = true
                e.append(ev(probe, r, "the server's ACK arrives with a run of \(f.ackProbeReplyNOPRun) NOPs where its DSS was: its MPTCP options are stripped on the way back"))
            }
        }
        // Server data without a mapping but with a NOP run (or other MPTCP options) in its place was
        // stripped on the way; a wholly plain segment is what a server sends after its own fallback.
        let options = f.serverDataWithoutMapping.flatMap { r.packets[$0].packet.tcp?.header.options }
        if let n = f.serverDataWithoutMapping, let o = options, o.longestNOPRun >= 4 || !o.mptcp.isEmpty {
            toClient = true
            let nops = o.longestNOPRun
            e.append(ev(n, r, "the server's data arrives without a DSS mapping" + (nops >= 4 ? " (a run of \(nops) NOPs in its place)" : "")
                           + " although its segments carried DSS before: we fell back to TCP (RFC 8684 §3.7)"))
        } else if let n = f.serverNOPRun, n != probe, r.packets[n].packet.tcp?.payload.isEmpty == false {
            toClient = true
            e.append(ev(n, r, "the server's data arrives with a NOP run where its DSS was"))
        }
        if let p = f.serverPlainSegment {
            toServer = true
            e.append(ev(p, r, "then the server's segments carry neither DSS nor a NOP run: the server fell back on our data, which reached it without DSS"))
        }
        if let d = data {
            toServer = true
            e.append(ev(d.packet, r, "the quote from hop \(d.ttl) shows our data segment's MPTCP option \(d.state.rawValue)"))
        }
        guard toServer || toClient else {
            return Verdict("unclear", e + [Evidence(packet: nil, why: "the server fell back after a good handshake, but neither its segments nor the path showed which way the DSS was lost")])
        }
        var detail = ["direction": toServer && toClient ? "both" : toServer ? "client-to-server" : "server-to-client"]
        if let d = data { detail["hop"] = "\(d.ttl)" }
        return Verdict("fallback.dss-stripped", e, detail: detail)
    }

    static func joinVerdict(_ r: SessionRecord) -> Verdict {
        let f = r.facts
        guard let outcome = f.joinOutcome else { return Verdict("join.timeout", [Evidence(packet: nil, why: "no MP_JOIN SYN was sent")]) }
        let syn = f.joinSynPackets.first.map { ev($0, r, "MP_JOIN SYN with the server's token") }
        switch outcome {
        case .noAnswer, .unreachable:
            return Verdict("join.timeout", [syn, Evidence(packet: nil, why: "\(f.joinSynPackets.count) MP_JOIN SYNs got no answer")].compactMap { $0 })
        case .reset(let i):
            let reason = f.joinReset?.reason
            return Verdict("join.rst", [syn, ev(i, r, reason.map { "RST with MP_TCPRST reason \($0)" } ?? "RST without MP_TCPRST")].compactMap { $0 },
                           detail: reason.map { ["reason": "\($0)"] } ?? [:])
        case .synAck(let i):
            if !f.joinSynAckHasJoin {
                if f.joinSynAckNOPRun >= 4 {
                    return Verdict("join.synack-stripped", [syn, ev(i, r, "the SYN/ACK has no MP_JOIN but a run of \(f.joinSynAckNOPRun) NOPs")].compactMap { $0 })
                }
                return Verdict("join.syn-stripped", [syn, ev(i, r, "the server answered our MP_JOIN SYN as a plain new connection: it did not see MP_JOIN")].compactMap { $0 })
            }
            if f.joinHMACValid == false {
                let ourReset = r.packets.first { $0.direction == .out && $0.subflow == 1 && ($0.packet.tcp?.header.flags.contains(.rst) ?? false) }
                return Verdict("join.hmac-mismatch", [syn, ev(i, r, "the SYN/ACK's truncated HMAC does not match the keys and nonces"),
                                                      ourReset.map { ev($0.index, r, "we closed the subflow: RST with MP_TCPRST reason 1, MPTCP specific error (RFC 8684 §3.2)") }].compactMap { $0 })
            }
            if let rst = f.joinReset {
                return Verdict("join.rst", [syn, ev(rst.packet, r, rst.reason.map { "RST with MP_TCPRST reason \($0) after our third ACK" } ?? "RST after our third ACK")].compactMap { $0 },
                               detail: rst.reason.map { ["reason": "\($0)"] } ?? [:])
            }
            guard let fourth = f.joinFourthAck else {
                return Verdict("join.timeout", [syn, ev(i, r, "valid SYN/ACK"), Evidence(packet: nil, why: "no ACK of our third ACK (the fourth ACK) arrived")].compactMap { $0 })
            }
            var e = [syn, ev(i, r, "the SYN/ACK's HMAC matches"), ev(fourth, r, "the server acknowledged our third ACK (HMAC accepted)")].compactMap { $0 }
            if f.joinBytesSent > 0 { e.append(Evidence(packet: nil, why: "\(f.joinBytesAcked) of \(f.joinBytesSent) bytes sent on the join were acknowledged")) }
            if f.joinBytesSent > 0 && f.joinBytesAcked < f.joinBytesSent {
                return Verdict("join.timeout", e + [Evidence(packet: nil, why: "data on the joined subflow was not acknowledged")])
            }
            return Verdict("join.ok", e)
        }
    }

    static func addAddrVerdict(_ r: SessionRecord) -> Verdict {
        let f = r.facts
        let sent = ev(f.addAddrSent.first, r, "ADD_ADDR with HMAC sent \(f.addAddrSent.count) time(s)")
        if let e = f.addAddrEcho { return Verdict("add-addr.ok", [sent, ev(e, r, "the server echoed it (flag E)")]) }
        let inspection = f.inspections.first { $0.segment == "add-addr" }
        // Our segment arrived at a router after the box without the option: stripped, not lost.
        if let insp = inspection, let c = insp.firstChanged {
            var e = [sent, ev(c.packet, r, "the quote from hop \(c.ttl) (\(c.router.map { "\($0)" } ?? "?")) shows our ADD_ADDR segment with the option \(c.state.rawValue)")]
            if let ok = insp.lastIntactBefore { e.append(ev(ok.packet, r, "hop \(ok.ttl) still quoted it intact")) }
            return Verdict("add-addr.stripped", e, detail: ["direction": "client-to-server", "hop": "\(c.ttl)"])
        }
        let first = f.addAddrSent.first ?? 0
        if let n = r.packets.first(where: { $0.index > first && $0.direction == .in && $0.subflow == 0
            && ($0.packet.tcp?.header.options.longestNOPRun ?? 0) >= 4 }) {
            return Verdict("add-addr.stripped", [sent, ev(n.index, r, "a server segment after our ADD_ADDR holds a NOP run where its echo would be")],
                           detail: ["direction": "server-to-client"])
        }
        var e = [sent, Evidence(packet: nil, why: "no echo came back")]
        if let insp = inspection {
            let seen = insp.hops.filter { $0.state == .intact }.count
            e.append(Evidence(packet: nil, why: seen > 0 ? "\(seen) hop(s) quoted our ADD_ADDR segment intact; none after them showed it changed"
                                                      : "no hop quoted our ADD_ADDR segment: the path could not be checked"))
        }
        return Verdict("add-addr.no-echo", e)
    }
}

extension HandshakeOutcome {
    var packet: Int? {
        switch self {
        case .synAck(let i), .reset(let i): return i
        case .unreachable(let i, _): return i
        case .noAnswer: return nil
        }
    }
}
