import Wire
import Report

extension KernelSessionReport {
    static func hex(_ v: UInt32) -> JSON { .string(String(v, radix: 16)) }
    static func hex(_ v: UInt64) -> JSON { .string(String(v, radix: 16)) }

    static func infoJSON(_ i: KernelMPTCPInfo) -> [(String, JSON)] {
        [("subflows", .number(i.subflows)), ("flags", .number(i.flags)), ("fallback", .bool(i.fallback)),
         ("remote_key_received", .bool(i.remoteKeyReceived)), ("token", hex(i.token)), ("checksums", .bool(i.checksumEnabled)),
         ("add_addr_signal", .number(i.addAddrSignal)), ("add_addr_accepted", .number(i.addAddrAccepted)),
         ("subflows_max", .number(i.subflowsMax)), ("add_addr_accepted_max", .number(i.addAddrAcceptedMax)),
         ("write_seq", hex(i.writeSequence)), ("snd_una", hex(i.sendUnacknowledged)), ("rcv_nxt", hex(i.receiveNext)),
         ("bytes_sent", .number(i.bytesSent)), ("bytes_acked", .number(i.bytesAcked)), ("bytes_received", .number(i.bytesReceived))]
    }

    static func viewJSON(_ v: KernelSocketView) -> [(String, JSON)] {
        var m: [(String, JSON)] = [("tcp_is_mptcp", v.isMPTCP.map { .bool($0) } ?? .null)]
        if let i = v.info { m += infoJSON(i) } else if let e = v.infoError { m.append(("mptcp_info_error", .string(e))) }
        return m
    }

    static func socketJSON(_ s: InetDiagMessage) -> [(String, JSON)] {
        [("local", .string(s.source.map { "\($0)" } ?? "?")), ("sport", .number(s.id.sourcePort)),
         ("remote", .string(s.destination.map { "\($0)" } ?? "?")), ("dport", .number(s.id.destinationPort)),
         ("state", .string(s.stateName)), ("inode", .number(s.inode))]
    }

    static func diagJSON(_ d: KernelDiagView) -> JSON {
        var m: [(String, JSON)] = []
        if let c = d.connection {
            m.append(("mptcp", .object(socketJSON(c) + (c.mptcpInfo.map(infoJSON) ?? []))))
        } else {
            m.append(("mptcp", .null))
        }
        m.append(("subflows", .array(d.subflows.map { s in
            var o = socketJSON(s.socket)
            if let x = s.mptcp {
                o += [("ulp", "mptcp"), ("flags", .string(x.flagLetters)), ("flag_names", .array(x.flagNames.map { .string($0) })),
                      ("token_local", x.localToken.map(hex) ?? .null), ("token_remote", x.remoteToken.map(hex) ?? .null),
                      ("id_local", .optional(x.localID)), ("id_remote", .optional(x.remoteID))]
            }
            return JSON.compact(o)
        })))
        if !d.problems.isEmpty { m.append(("problems", .array(d.problems.map { .string($0) }))) }
        return .object(m)
    }

    static func wireJSON(_ f: KernelSessionFacts, _ w: KernelWireFacts?) -> JSON {
        guard let w else { return .object([("captured", false), ("error", f.captureError.map { .string($0) } ?? .null)]) }
        func mpc(_ i: Int?) -> JSON { i.map { .bool(options(w, $0).mpCapable != nil) } ?? .null }
        return JSON.compact([
            ("captured", true), ("packets", .number(w.packets.count)), ("dropped", .number(f.captureDropped)),
            ("unparsed", w.unparsed > 0 ? .number(w.unparsed) : .null), ("error", f.captureError.map { .string($0) } ?? .null),
            ("syn_mp_capable", mpc(w.syns.first)), ("synack_mp_capable", mpc(w.synAck)),
            ("third_ack_mp_capable", mpc(w.thirdAck)), ("first_data_mp_capable", mpc(w.firstDataOut)),
            ("data_out", .number(w.dataOut)), ("data_out_with_mptcp", .number(w.dataOutWithMPTCP)),
            ("data_in", .number(w.dataIn)), ("data_in_with_dss", .number(w.dataInWithDSS)),
        ])
    }

    /// The address a joined subflow left from (the path manager picks it): its MP_JOIN SYN's source.
    static func joinSource(_ a: Analysis, port: UInt16) -> IPAddress? {
        a.wire?.packets.first { $0.direction == .out && $0.label == "syn" && $0.packet.tcp?.header.sourcePort == port }?.packet.ip.source
    }

    /// The document (schema mptracebox.session/1, mode "kernel").
    public static func json(_ f: KernelSessionFacts, _ a: Analysis) -> JSON {
        let echoOK = payloadIntact(f)
        var subflows: [JSON] = [.object([("kind", "initial"), ("local", f.localAddress.map { .string("\($0)") } ?? .null),
                                         ("sport", .optional(f.localPort))] + SessionReport.verdictJSON(a.verdict))]
        for j in a.joins {
            subflows.append(.object([("kind", "join"), ("local", joinSource(a, port: j.port).map { .string("\($0)") } ?? .null),
                                     ("sport", .number(j.port))] + SessionReport.verdictJSON(j.verdict)))
        }
        var kernel = viewJSON(f.established)
        kernel.append(("diag", diagJSON(a.diag)))
        kernel.append(("at_close", .object(viewJSON(f.atClose))))
        let dataAcked = f.atClose.info?.bytesAcked ?? f.established.info?.bytesAcked
        var doc: [(String, JSON)] = [
            ("schema", .string(SessionReport.schema)), ("target", .string("\(f.target)")), ("port", .number(f.port)), ("mode", "kernel"),
            ("version", a.kernelFellBack == false ? 1 : .null),
        ]
        doc += SessionReport.verdictJSON(a.verdict)
        doc += [
            ("subflows", .array(subflows)),
            ("kernel", .object(kernel)),
            ("wire", wireJSON(f, a.wire)),
            ("payload", .string(echoOK == nil ? "unchecked" : echoOK! ? "intact" : "changed")),
            ("counters", .object([("bytes_sent", .number(f.bytesSent)), ("bytes_acked_data_level", .optional(dataAcked)),
                                  ("bytes_received", .number(f.received.count)), ("packets", .number(a.wire?.packets.count ?? 0))])),
        ]
        if let insp = a.wire?.inspection { doc.append(("inspections", .array([SessionReport.inspectionJSON(insp)]))) }
        if let c = f.pathCheck, let e = c.error { doc.append(("path_check_error", .string(e))) }
        if let e = f.error { doc.append(("error", .string(e))) }
        if let w = a.wire { doc.append(("packets", .array(w.packets.map(SessionReport.packetJSON)))) }
        return .object(doc)
    }

    static func payloadIntact(_ f: KernelSessionFacts) -> Bool? {
        f.expectEcho && f.outcome == .connected ? Array(f.received.prefix(f.payload.count)) == f.payload : nil
    }

    /// The terminal story: what the wire showed step by step, what the kernel said, the verdict.
    public static func text(_ f: KernelSessionFacts, _ a: Analysis) -> String {
        var lines = ["MPTCP session to \(f.target) port \(f.port)" + (f.localPort.map { " from \(f.localAddress.map { "\($0)" } ?? "?"):\($0)" } ?? "") + " (kernel stack)"]
        func step(_ ok: Bool?, _ s: String) { lines.append("  [\(ok == nil ? " ?? " : ok! ? " ok " : "FAIL")] \(s)") }
        step(f.outcome == .connected, "connect: \(f.outcome.rawValue)" + (f.error.map { " (\($0))" } ?? ""))
        if let w = a.wire {
            for i in w.syns {
                let c = options(w, i).mpCapable
                step(c != nil, "SYN (#\(i)) " + (c.map { "with \(describe($0))" } ?? "without MP_CAPABLE"))
            }
            if let i = w.synAck {
                let o = options(w, i)
                step(o.mpCapable != nil, "SYN/ACK (#\(i)) " + (o.mpCapable.map { "with \(describe($0))" } ?? "without MP_CAPABLE" + (o.longestNOPRun >= 4 ? " (a run of \(o.longestNOPRun) NOPs)" : "")))
            }
            if let i = w.thirdAck {
                let c = options(w, i).mpCapable
                step(c != nil, "third ACK (#\(i)) " + (c.map { "with \(describe($0))" } ?? "without MP_CAPABLE"))
            }
            if let i = w.firstDataOut {
                let o = options(w, i)
                step(!o.mptcp.isEmpty, "first data (#\(i)) " + (o.mpCapable.map { "with \(describe($0))" } ?? (o.mptcp.isEmpty ? "without MPTCP option" : "with DSS")))
            }
            if let i = w.serverFirst {
                let o = options(w, i)
                step(!o.mptcp.isEmpty, "server's first segment after the handshake (#\(i)) " + (o.mptcp.isEmpty ? "without MPTCP option" : "with " + o.mptcp.map { $0.subtype.name }.joined(separator: ", ")))
            }
            step(w.dataIn == 0 ? nil : w.dataInWithDSS == w.dataIn, "data: \(w.dataOut) segment(s) out (\(w.dataOutWithMPTCP) with an MPTCP option), \(w.dataIn) in (\(w.dataInWithDSS) with a DSS mapping)")
            if f.captureDropped > 0 { step(false, "the capture lost \(f.captureDropped) packet(s)") }
        } else {
            step(nil, "no capture" + (f.captureError.map { ": \($0)" } ?? ""))
        }
        let v = f.established
        step(v.isMPTCP.map { $0 }, "TCP_IS_MPTCP: " + (v.isMPTCP.map { $0 ? "1" : "0" } ?? "not answered"))
        if let i = v.info {
            step(!i.fallback, "MPTCP_INFO: \(i.fallback ? "FALLBACK" : "no fallback"), remote key \(i.remoteKeyReceived ? "received" : "not received"), \(i.subflows) additional subflow(s), token \(String(i.token, radix: 16))")
        } else if let e = v.infoError {
            step(nil, "MPTCP_INFO refused: \(e)")
        }
        if let c = a.diag.connection, let i = c.mptcpInfo {
            step(!i.fallback, "ss -M: \(c.stateName) token \(String(i.token, radix: 16))\(i.fallback ? " fallback" : "")\(i.remoteKeyReceived ? " remote_key" : ""), \(i.subflows) additional subflow(s)")
        }
        for s in a.diag.subflows {
            step(nil, "subflow \(s.socket.source.map { "\($0)" } ?? "?"):\(s.socket.id.sourcePort) \(s.socket.stateName)" + (s.mptcp.map { " tcp-ulp-mptcp flags:\($0.flagLetters) token:\($0.localToken.map { String($0, radix: 16) } ?? "?")" } ?? " (no MPTCP ULP info)"))
        }
        for p in a.diag.problems { step(nil, p) }
        let echoOK = payloadIntact(f)
        step(echoOK, "sent \(f.bytesSent) bytes, received \(f.received.count)" + (echoOK.map { $0 ? " (equal to what was sent)" : " (NOT equal to what was sent)" } ?? ""))
        for j in a.joins {
            step(j.verdict.id == "join.ok", "subflow from \(joinSource(a, port: j.port).map { "\($0)" } ?? "?"):\(j.port): \(j.verdict.id)")
        }
        if let insp = a.wire?.inspection {
            lines.append("  path check of the \(insp.segment): " + insp.hops.map { "\($0.ttl):\($0.state.rawValue)" }.joined(separator: " "))
        }
        lines.append("verdict: \(a.verdict.id)")
        for e in a.verdict.evidence { lines.append("  - " + (e.packet.map { "#\($0) " } ?? "") + e.why) }
        return lines.joined(separator: "\n")
    }
}
