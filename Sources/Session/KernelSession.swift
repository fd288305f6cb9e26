import Wire
import PacketIO

/// Everything a kernel-mode session observed, as plain values: what the socket calls returned,
/// what the kernel said (TCP_IS_MPTCP, MPTCP_INFO, sock_diag) and what the capture saw.
public struct KernelSessionFacts: Sendable {
    public enum Outcome: String, Sendable { case connected, refused, unreachable, timeout }
    public var outcome: Outcome
    public var error: String?
    public var target: IPAddress
    public var port: UInt16
    public var localAddress: IPAddress?
    public var localPort: UInt16?
    public var payload: [UInt8] = []
    public var expectEcho = true
    public var bytesSent = 0
    public var received: [UInt8] = []
    /// The kernel's view while the connection was established, and again just before close().
    public var established = KernelSocketView()
    public var atClose = KernelSocketView()
    /// The captured IP packets of the connection with their times; nil when nothing was captured.
    public var captured: [(time: Double, bytes: [UInt8])]?
    public var captureError: String?
    public var captureDropped = 0
    /// Whether a plain SYN/ACK may be explained with TTL-limited copies of our SYN (`--no-inspect` turns it off).
    public var inspectPath = true
    /// Those copies and the routers' answers, when they were sent.
    public var pathCheck: KernelPathCheck?

    public init(outcome: Outcome, target: IPAddress, port: UInt16) {
        self.outcome = outcome
        self.target = target
        self.port = port
    }
}

/// Kernel mode's path check: after the kernel's connection closed, TTL-limited copies of its SYN
/// (the one the SYN/ACK answered) went out, and these ICMP errors quoting them came back.
public struct KernelPathCheck: Sendable {
    public var sent: [(time: Double, ttl: Int, bytes: [UInt8])] = []
    public var received: [(time: Double, bytes: [UInt8])] = []
    /// Why the check stopped early or could not run (no raw socket, send failed).
    public var error: String?
    public init() {}
}

/// The connection's own sockets picked out of the sock_diag answers.
public struct KernelDiagView: Sendable {
    /// The MPTCP socket (`ss -M`), with its struct mptcp_info.
    public var connection: InetDiagMessage?
    public var info: KernelMPTCPInfo? { connection?.mptcpInfo }
    /// Its TCP subflows (`ss -ti` lines with tcp-ulp-mptcp).
    public var subflows: [(socket: InetDiagMessage, mptcp: MPTCPSubflowInfo?)] = []
    /// Why a part is missing (query failed, socket not listed, attributes malformed).
    public var problems: [String] = []
}

/// What the capture showed on the initial subflow, packet by packet.
public struct KernelWireFacts: Sendable {
    public var packets: [RecordedPacket] = []
    /// Packets of the connection that did not parse as IP/TCP.
    public var unparsed = 0
    public var syns: [Int] = []
    public var synAck: Int?
    public var thirdAck: Int?
    public var firstDataOut: Int?
    /// The server's first non-SYN segment (the answer to our third ACK / first data).
    public var serverFirst: Int?
    public var firstDSSOut: Int?
    public var firstDSSIn: Int?
    public var dataOut = 0, dataOutWithMPTCP = 0, dataIn = 0, dataInWithDSS = 0
    /// The first server segment after one with DSS that carries none (a later fallback).
    public var serverDSSLost: Int?
    public var mpFail: Int?
    public var infiniteMapping: Int?
    public var mptcpReset: (packet: Int, reason: UInt8)?
    public var resets: [Int] = []
    /// Local ports of other subflows (MP_JOIN), in order of their first SYN.
    public var joinPorts: [UInt16] = []
    /// The path check of our SYN (its copies and quotes are numbered after the connection's packets).
    public var inspection: Inspection?
}

/// Kernel mode: the verdict, the evidence, the JSON document and the terminal story.
public enum KernelSessionReport {
    public struct Analysis: Sendable {
        public var verdict: Verdict
        public var joins: [(port: UInt16, verdict: Verdict)]
        public var wire: KernelWireFacts?
        public var diag: KernelDiagView
        /// The kernel's conclusion: fell back to TCP, stayed MPTCP, or nil when it said nothing.
        public var kernelFellBack: Bool?
        /// Set when only a path check can tell a server without MPTCP from a SYN stripped on the
        /// way: the SYN to copy and the hops before the server. The caller sends the copies
        /// (`checkPath`), puts the result in the facts and analyses again.
        public var pathCheckRequest: (syn: IPPacket, maxTTL: Int)?
    }

    public static func analyse(_ f: KernelSessionFacts) -> Analysis {
        let diag = diagView(f)
        let wire = f.captured.map { wireFacts($0, f) }
        let fellBack = kernelFellBack(f, diag)
        var joins: [(UInt16, Verdict)] = []
        if let w = wire { joins = w.joinPorts.map { ($0, joinVerdict(w, port: $0)) } }
        var request: (syn: IPPacket, maxTTL: Int)?
        if f.outcome == .connected, fellBack == true, f.inspectPath, f.pathCheck == nil, let w = wire, let (syn, synAck) = plainSynAck(w) {
            let d = PathInspection.distance(receivedTTL: w.packets[synAck].packet.ip.ttl)
            if d > 1 { request = (w.packets[syn].packet, d - 1) }
        }
        return Analysis(verdict: verdict(f, diag, wire, fellBack), joins: joins, wire: wire, diag: diag, kernelFellBack: fellBack,
                        pathCheckRequest: request)
    }

    /// The SYN the SYN/ACK answered carried MP_CAPABLE, the SYN/ACK has none and no NOP run:
    /// a server without MPTCP, or a box that removed the option from our SYN. Their indices.
    static func plainSynAck(_ w: KernelWireFacts) -> (syn: Int, synAck: Int)? {
        guard let synAck = w.synAck, let first = w.syns.first else { return nil }
        let syn = w.syns.last { $0 < synAck } ?? first
        let sa = options(w, synAck)
        guard options(w, syn).mpCapable != nil, sa.mpCapable == nil, sa.longestNOPRun < 4 else { return nil }
        return (syn, synAck)
    }

    /// Sends TTL-limited copies of `syn` (TTL 1...maxTTL, marked as crafted mode marks them) and
    /// collects the ICMP errors that quote them, until every hop answered or `timeout` passed.
    /// Call it after the kernel's connection is closed: the copies then disturb nothing of it.
    public static func checkPath(syn: IPPacket, maxTTL: Int, network: PacketNetwork, timeout: Double) -> KernelPathCheck {
        var check = KernelPathCheck()
        guard let seg = syn.tcp else { check.error = "the SYN to copy is not TCP"; return check }
        let copies = PathInspection.copies(of: syn, maxTTL: maxTTL)
        guard let top = copies.last?.ttl else { return check }
        do {
            for c in copies {
                let bytes = try c.packet.serialized(finalize: true)
                try network.send(bytes)
                check.sent.append((network.now(), c.ttl, bytes))
            }
            var quotes: [(index: Int, packet: IPPacket)] = []
            var views: [Int: HopView] = [:]
            let deadline = network.now() + timeout
            while !PathInspection.collect(seg, from: quotes, top: top, into: &views) {
                guard let r = try network.receive(until: deadline) else { break }
                // Only ICMP errors about our copies are kept (the capture also sees others').
                guard let p = try? IPPacket.parse(r.bytes), PathInspection.quotes(p, packetOf: syn) else { continue }
                quotes.append((check.received.count, p))
                check.received.append((r.time, r.bytes))
            }
        } catch {
            check.error = "\(error)"
        }
        return check
    }

    // MARK: The kernel's view

    /// Picks our MPTCP socket and its subflows out of the answers (they list other sockets too).
    public static func diagView(_ f: KernelSessionFacts) -> KernelDiagView {
        var d = KernelDiagView()
        let v = f.established
        if let e = v.mptcpDiagError { d.problems.append("sock_diag of MPTCP sockets failed: \(e)") }
        if let e = v.tcpDiagError { d.problems.append("sock_diag of TCP sockets failed: \(e)") }
        if let a = v.mptcpDiag {
            if let e = a.errorNumber { d.problems.append("sock_diag of MPTCP sockets: the kernel answered errno \(e)") }
            d.connection = a.sockets.first {
                $0.id.destinationPort == f.port && $0.destination == f.target && (f.localPort == nil || $0.id.sourcePort == f.localPort)
            }
            if d.connection == nil, a.errorNumber == nil { d.problems.append("sock_diag lists no MPTCP socket to \(f.target) port \(f.port) from our port") }
        }
        let token = d.info?.token ?? v.info?.token
        if let a = v.tcpDiag {
            if let e = a.errorNumber { d.problems.append("sock_diag of TCP sockets: the kernel answered errno \(e)") }
            for s in a.sockets where s.id.destinationPort == f.port && s.destination == f.target {
                let ulp: ULPInfo?
                do { ulp = try s.ulp() } catch {
                    d.problems.append("the ULP info of the TCP socket from port \(s.id.sourcePort) does not parse: \(error)")
                    continue
                }
                let ours = s.id.sourcePort == f.localPort || (token != nil && ulp?.mptcp?.localToken == token)
                guard ours else { continue }
                if ulp?.name != "mptcp" {
                    d.problems.append("the TCP socket from port \(s.id.sourcePort) has no MPTCP ULP info" + (ulp == nil ? " (older kernels show it only with CAP_NET_ADMIN)" : " (ULP \(ulp!.name))"))
                }
                d.subflows.append((s, ulp?.mptcp))
            }
        }
        return d
    }

    /// Fell back per TCP_IS_MPTCP, MPTCP_INFO or sock_diag's mptcp_info; nil when none answered.
    static func kernelFellBack(_ f: KernelSessionFacts, _ d: KernelDiagView) -> Bool? {
        let signs = [f.established.isMPTCP.map { !$0 }, f.established.info?.fallback, d.info?.fallback].compactMap { $0 }
        return signs.isEmpty ? nil : signs.contains(true)
    }

    // MARK: The wire

    public static func wireFacts(_ captured: [(time: Double, bytes: [UInt8])], _ f: KernelSessionFacts) -> KernelWireFacts {
        var w = KernelWireFacts()
        var initialPort = f.localPort
        var seenDSSIn = false
        var joinSeen: Set<UInt16> = []
        for c in captured {
            guard let p = try? IPPacket.parse(c.bytes), let t = p.tcp else { w.unparsed += 1; continue }
            let h = t.header
            let out = p.ip.destination == f.target && h.destinationPort == f.port
            guard out || (p.ip.source == f.target && h.sourcePort == f.port) else { continue }
            let port = out ? h.sourcePort : h.destinationPort
            let mptcp = h.options.mptcp
            if initialPort == nil, out, h.flags.contains(.syn), h.options.mpCapable != nil { initialPort = port }
            if out, h.flags.contains(.syn), mptcp.contains(where: { if case .join = $0 { return true }; return false }), !joinSeen.contains(port) {
                joinSeen.insert(port)
                w.joinPorts.append(port)
            }
            let i = w.packets.count
            let initial = port == initialPort
            let dss = mptcp.compactMap { m -> DSS? in if case .dss(let d) = m { return d }; return nil }.first
            var label = "ack"
            if h.flags.contains(.rst) {
                label = "rst"
                if initial { w.resets.append(i) }
            } else if h.flags.contains(.syn) {
                label = h.flags.contains(.ack) ? "synack" : "syn"
                if initial {
                    if out { w.syns.append(i) } else if w.synAck == nil { w.synAck = i }
                }
            } else if initial, out, w.synAck != nil, w.thirdAck == nil, t.payload.isEmpty {
                label = "third-ack"
                w.thirdAck = i
            } else if !t.payload.isEmpty {
                label = "data"
            } else if h.flags.contains(.fin) {
                label = "fin"
            }
            if initial, !h.flags.contains(.syn), !h.flags.contains(.rst) {
                if out, !t.payload.isEmpty {
                    w.dataOut += 1
                    if w.firstDataOut == nil { w.firstDataOut = i }
                    if !mptcp.isEmpty { w.dataOutWithMPTCP += 1 }
                }
                if !out {
                    if w.serverFirst == nil, w.synAck != nil { w.serverFirst = i }
                    if !t.payload.isEmpty {
                        w.dataIn += 1
                        if dss?.mapping != nil { w.dataInWithDSS += 1 }
                    }
                    if dss != nil { seenDSSIn = true } else if seenDSSIn, w.serverDSSLost == nil { w.serverDSSLost = i }
                }
                if let d = dss {
                    if out, w.firstDSSOut == nil { w.firstDSSOut = i }
                    if !out, w.firstDSSIn == nil { w.firstDSSIn = i }
                    if !out, d.mapping?.dataLevelLength == 0, w.infiniteMapping == nil { w.infiniteMapping = i }
                }
                for m in mptcp where !out {
                    if case .fail = m, w.mpFail == nil { w.mpFail = i }
                    if case .reset(let r) = m, w.mptcpReset == nil { w.mptcpReset = (i, r.reason) }
                }
            }
            w.packets.append(RecordedPacket(index: i, time: c.time, direction: out ? .out : .in,
                                            subflow: initial ? 0 : (joinSeen.contains(port) ? 1 : nil), packet: p, label: label))
        }
        if let check = f.pathCheck { addPathCheck(check, to: &w) }
        return w
    }

    /// Numbers the path check's copies and quotes after the connection's packets and reads the quotes.
    static func addPathCheck(_ check: KernelPathCheck, to w: inout KernelWireFacts) {
        var sent: TCPSegment?
        var top = 0
        for c in check.sent {
            guard let p = try? IPPacket.parse(c.bytes) else { continue }
            if sent == nil { sent = p.tcp }
            top = max(top, c.ttl)
            w.packets.append(RecordedPacket(index: w.packets.count, time: c.time, direction: .out, subflow: nil, packet: p, label: "inspect syn ttl \(c.ttl)"))
        }
        var quotes: [(index: Int, packet: IPPacket)] = []
        for r in check.received {
            guard let p = try? IPPacket.parse(r.bytes) else { continue }
            let label = p.icmp.map { "icmp type \($0.type) code \($0.code)" } ?? "icmp"
            quotes.append((w.packets.count, p))
            w.packets.append(RecordedPacket(index: w.packets.count, time: r.time, direction: .in, subflow: nil, packet: p, label: label))
        }
        if let sent { w.inspection = PathInspection.inspection(segment: "syn", sent: sent, quotes: quotes, maxTTL: top) }
    }

    static func options(_ w: KernelWireFacts, _ i: Int) -> TCPOptions { w.packets[i].packet.tcp?.header.options ?? TCPOptions() }

    static func ev(_ w: KernelWireFacts?, _ i: Int?, _ why: String) -> Evidence {
        Evidence(packet: i, direction: i.flatMap { i in w.map { $0.packets[i].direction } }, why: why)
    }

    static func describe(_ c: MPCapable) -> String {
        "MP_CAPABLE v\(c.version)" + (c.senderKey != nil ? (c.receiverKey != nil ? " with both keys" : " with a key") : " without a key")
            + (c.dataLevelLength != nil ? " and the data length" : "")
    }

    // MARK: The verdict

    static func verdict(_ f: KernelSessionFacts, _ d: KernelDiagView, _ w: KernelWireFacts?, _ fellBack: Bool?) -> Verdict {
        switch f.outcome {
        case .refused:
            return Verdict("refused", [ev(w, w?.resets.first, "connect() failed: \(f.error ?? "connection refused")")])
        case .unreachable:
            return Verdict("unreachable", [Evidence(packet: nil, why: "connect() failed: \(f.error ?? "no route")")])
        case .timeout:
            var e = [Evidence(packet: nil, why: "connect() failed: \(f.error ?? "timed out")")]
            if let w, !w.syns.isEmpty { e.append(ev(w, w.syns.first, "\(w.syns.count) SYN(s) sent, no SYN/ACK captured")) }
            return Verdict("timeout", e)
        case .connected:
            break
        }
        var kernel: [Evidence] = []
        if let m = f.established.isMPTCP { kernel.append(Evidence(packet: nil, why: "TCP_IS_MPTCP is \(m ? 1 : 0)")) }
        if let i = f.established.info {
            kernel.append(Evidence(packet: nil, why: "MPTCP_INFO: " + (i.fallback ? "flag FALLBACK" : "no fallback") + (i.remoteKeyReceived ? ", the server's key received" : ", no server key")))
        } else if let e = f.established.infoError {
            kernel.append(Evidence(packet: nil, why: "MPTCP_INFO refused (\(e))"))
        }
        if let i = d.info {
            kernel.append(Evidence(packet: nil, why: "sock_diag (ss -M): " + (i.fallback ? "fallback" : "no fallback") + (i.remoteKeyReceived ? ", remote_key" : "")))
        }
        for s in d.subflows {
            if let m = s.mptcp { kernel.append(Evidence(packet: nil, why: "subflow from port \(s.socket.id.sourcePort): tcp-ulp-mptcp flags \(m.flagLetters.isEmpty ? "none" : m.flagLetters)")) }
        }
        guard let fellBack else {
            return Verdict("unclear", kernel + [Evidence(packet: nil, why: "the kernel answered neither TCP_IS_MPTCP, MPTCP_INFO nor sock_diag")])
        }
        if !fellBack {
            var e = kernel
            if let w {
                if let s = w.synAck, let c = options(w, s).mpCapable { e.append(ev(w, s, "the SYN/ACK carries the server's \(describe(c))")) }
                if let i = w.firstDSSOut { e.append(ev(w, i, "our segments carry DSS")) }
                if let i = w.firstDSSIn { e.append(ev(w, i, "the server's segments carry DSS")) }
            }
            return Verdict("mptcp", e)
        }
        guard let w else {
            return Verdict("unclear", kernel + [Evidence(packet: nil, why: "the kernel fell back to TCP; without a capture (\(f.captureError ?? "none")) the wire cannot say why")])
        }
        return fallbackVerdict(w, kernel, f)
    }

    /// Why the kernel fell back, from the packets of the initial subflow.
    static func fallbackVerdict(_ w: KernelWireFacts, _ kernel: [Evidence], _ f: KernelSessionFacts) -> Verdict {
        guard let firstSYN = w.syns.first else {
            return Verdict("unclear", kernel + [Evidence(packet: nil, why: "the kernel fell back, but the capture holds none of our SYNs")])
        }
        let withMPC = w.syns.filter { options(w, $0).mpCapable != nil }
        guard let synAck = w.synAck else {
            return Verdict("unclear", kernel + [ev(w, firstSYN, "the kernel fell back, but the capture holds no SYN/ACK")])
        }
        if withMPC.isEmpty {
            return Verdict("unclear", kernel + [ev(w, firstSYN, "our SYN carries no MP_CAPABLE: the kernel itself chose TCP (MPTCP disabled for this path or route)")],
                           detail: ["fallback": "syn"])
        }
        // The kernel retries without MP_CAPABLE after unanswered SYNs (net.mptcp.syn_retrans_before_tcp_fallback).
        let lastSYN = w.syns.last { $0 < synAck } ?? firstSYN
        if options(w, lastSYN).mpCapable == nil {
            return Verdict("fallback.syn-dropped", kernel + [
                ev(w, withMPC.first, "\(withMPC.count) SYN(s) with MP_CAPABLE got no answer"),
                ev(w, lastSYN, "the kernel's retry without MP_CAPABLE"), ev(w, synAck, "was answered")], detail: ["fallback": "syn"])
        }
        let sa = options(w, synAck)
        guard let capable = sa.mpCapable else {
            if sa.longestNOPRun >= 4 {
                return Verdict("fallback.synack-stripped", kernel + [ev(w, lastSYN, "our SYN carries MP_CAPABLE"),
                    ev(w, synAck, "the SYN/ACK has no MP_CAPABLE but a run of \(sa.longestNOPRun) NOPs where an option was overwritten")],
                               detail: ["fallback": "synack"])
            }
            return plainSynAckVerdict(w, kernel + [ev(w, lastSYN, "our SYN carries MP_CAPABLE"),
                ev(w, synAck, "the SYN/ACK carries no MP_CAPABLE and no sign of stripping (no NOP run)")], f, synAck: synAck)
        }
        var e = kernel + [ev(w, synAck, "the SYN/ACK carries the server's \(describe(capable))")]
        if let t = w.thirdAck, let c = options(w, t).mpCapable { e.append(ev(w, t, "our third ACK carries \(describe(c))")) }
        if let d = w.firstDataOut, let c = options(w, d).mpCapable { e.append(ev(w, d, "our first data carries \(describe(c))")) }
        if w.mpFail != nil || w.infiniteMapping != nil {
            if let i = w.mpFail { e.append(ev(w, i, "the server sent MP_FAIL: a DSS checksum failed (payload changed on the way)")) }
            if let i = w.infiniteMapping { e.append(ev(w, i, "the server switched to an infinite mapping")) }
            return Verdict("fallback.checksum", e, detail: ["fallback": "data"])
        }
        if let r = w.mptcpReset {
            return Verdict("unclear", e + [ev(w, r.packet, "the server reset the connection with MP_TCPRST reason \(r.reason)")], detail: ["fallback": "reset"])
        }
        guard let s = w.serverFirst else {
            return Verdict("unclear", e + [Evidence(packet: nil, why: "the kernel fell back, but the capture holds no server segment after the handshake")])
        }
        let so = options(w, s)
        if so.mptcp.isEmpty {
            if so.longestNOPRun >= 4 {
                return Verdict("fallback.dss-stripped", e + [ev(w, s, "the server's first segment after the handshake has a run of \(so.longestNOPRun) NOPs where its DSS was: its MPTCP options are stripped on the way back")],
                               detail: ["direction": "server-to-client", "fallback": "data"])
            }
            return Verdict("fallback.ack-stripped", e + [ev(w, s, "the server's first segment after our third ACK carries no MPTCP option: it never took our keys")],
                           detail: ["fallback": "third-ack"])
        }
        if let lost = w.serverDSSLost {
            let lo = options(w, lost)
            if lo.longestNOPRun >= 4 {
                return Verdict("fallback.dss-stripped", e + [ev(w, s, "the server's first segments carry DSS"), ev(w, lost, "a later one has a run of \(lo.longestNOPRun) NOPs where its DSS was")],
                               detail: ["direction": "server-to-client", "fallback": "data"])
            }
            return Verdict("fallback.dss-stripped", e + [ev(w, s, "the server's first segment after the handshake carries DSS: it had our keys"),
                ev(w, lost, "a later server segment carries none: the server fell back on data, so our data reached it without a mapping")],
                           detail: ["direction": "client-to-server", "fallback": "data"])
        }
        return Verdict("unclear", e + [ev(w, s, "the server's segments carry MPTCP options, yet the kernel fell back; the wire does not show why")])
    }

    /// A plain SYN/ACK to our MP_CAPABLE SYN: the routers' quotes of its copies tell whether a
    /// box removed the option on the way (at which hop) or the server answered without MPTCP.
    static func plainSynAckVerdict(_ w: KernelWireFacts, _ e: [Evidence], _ f: KernelSessionFacts, synAck: Int) -> Verdict {
        let ambiguous = "the server does not speak MPTCP, or a box removed the option from our SYN"
        guard let insp = w.inspection, let top = insp.hops.last?.ttl else {
            let d = PathInspection.distance(receivedTTL: w.packets[synAck].packet.ip.ttl)
            let why: String
            if !f.inspectPath {
                why = "path check off (--no-inspect): \(ambiguous)"
            } else if let err = f.pathCheck?.error {
                why = "the path check failed (\(err)): \(ambiguous)"
            } else if d <= 1 {
                why = "the SYN/ACK's TTL puts the server 1 hop away: no router in between to quote our SYN; \(ambiguous)"
            } else {
                why = "no path check was made: \(ambiguous)"
            }
            return Verdict("unclear", e + [Evidence(packet: nil, why: why)], detail: ["fallback": "synack"])
        }
        var e = e
        if let c = insp.firstChanged {
            let router = c.router.map { "\($0)" }
            e.append(ev(w, c.packet, "the quote from hop \(c.ttl) (\(router ?? "?")) shows our SYN's MP_CAPABLE \(c.state.rawValue)"))
            if let ok = insp.lastIntactBefore { e.append(ev(w, ok.packet, "hop \(ok.ttl) (\(ok.router.map { "\($0)" } ?? "?")) still quoted it intact")) }
            var detail = ["fallback": "syn", "hop": "\(c.ttl)"]
            if let router { detail["router"] = router }
            return Verdict("fallback.syn-stripped", e, detail: detail)
        }
        let intact = insp.hops.filter { $0.state == .intact }
        guard let last = intact.last else {
            if let err = f.pathCheck?.error { e.append(Evidence(packet: nil, why: "the path check stopped: \(err)")) }
            return Verdict("unclear", e + [Evidence(packet: nil, why: "no router quoted the \(top) TTL-limited copies of our SYN (silent routers, or quotes too short to show options): \(ambiguous)")],
                           detail: ["fallback": "synack"])
        }
        e.append(ev(w, intact.first?.packet, "\(intact.count) of \(top) hop(s) quoted our SYN with MP_CAPABLE intact"))
        guard last.ttl == top else {
            return Verdict("unclear", e + [ev(w, last.packet, "hop \(last.ttl) quoted it intact, hops \(last.ttl + 1)...\(top) did not quote it: a box past hop \(last.ttl) may have removed it, or the server does not speak MPTCP")],
                           detail: ["fallback": "synack"])
        }
        return Verdict("fallback.not-mptcp-server", e + [ev(w, last.packet, "hop \(top) (\(last.router.map { "\($0)" } ?? "?")), the last router before the server, quoted it intact: the server answered our MP_CAPABLE without one")],
                       detail: ["fallback": "synack"])
    }

    static func joinVerdict(_ w: KernelWireFacts, port: UInt16) -> Verdict {
        let mine = w.packets.filter { p in
            guard let h = p.packet.tcp?.header else { return false }
            return (p.direction == .out ? h.sourcePort : h.destinationPort) == port
        }
        let syn = mine.first { $0.direction == .out && $0.label == "syn" }
        let synEv = syn.map { ev(w, $0.index, "MP_JOIN SYN from port \(port)") }
        if let r = mine.first(where: { $0.label == "rst" && $0.direction == .in }) {
            let reason = r.packet.tcp?.header.options.mptcp.compactMap { m -> UInt8? in if case .reset(let x) = m { return x.reason }; return nil }.first
            return Verdict("join.rst", [synEv, ev(w, r.index, reason.map { "RST with MP_TCPRST reason \($0)" } ?? "RST")].compactMap { $0 },
                           detail: reason.map { ["reason": "\($0)"] } ?? [:])
        }
        guard let sa = mine.first(where: { $0.label == "synack" }), let o = sa.packet.tcp?.header.options else {
            return Verdict("join.timeout", [synEv, Evidence(packet: nil, why: "no SYN/ACK captured")].compactMap { $0 })
        }
        if !o.mptcp.contains(where: { if case .join = $0 { return true }; return false }) {
            return o.longestNOPRun >= 4
                ? Verdict("join.synack-stripped", [synEv, ev(w, sa.index, "the SYN/ACK has no MP_JOIN but a run of \(o.longestNOPRun) NOPs")].compactMap { $0 })
                : Verdict("join.syn-stripped", [synEv, ev(w, sa.index, "the SYN/ACK has no MP_JOIN: the server took the SYN as a new connection")].compactMap { $0 })
        }
        return Verdict("join.ok", [synEv, ev(w, sa.index, "the SYN/ACK carries MP_JOIN")].compactMap { $0 })
    }
}
