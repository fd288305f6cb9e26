import Wire
import Diff

/// Renderings of wire values for people (text) and scripts (JSON). The core keeps typed values;
/// only this layer turns them into strings.
public enum WireText {
    public static func option(_ o: TCPOption) -> String {
        switch o {
        case .endOfList: return "EOL"
        case .noOperation: return "NOP"
        case .maximumSegmentSize(let v): return "MSS(\(v))"
        case .windowScale(let v): return "WS(\(v))"
        case .sackPermitted: return "SACKOK"
        case .sack(let b): return "SACK(" + b.map { "\($0.left)-\($0.right)" }.joined(separator: ",") + ")"
        case .timestamps(let v, let e): return "TS(\(v),\(e))"
        case .md5Signature: return "MD5"
        case .fastOpen(let c): return c.isEmpty ? "TFO(request)" : "TFO(\(c.hexString))"
        case .experimental(let k, let exid, let d):
            return exid == TCPOptionKind.fastOpenExID ? "TFO-exp(\(d.hexString))" : "EXP\(k)(0x\(String(exid, radix: 16)),\(d.hexString))"
        case .raw(let k, let d): return "\(TCPOptionKind(k).name)(\(d.hexString))"
        case .malformed(let m): return "MALFORMED(\(m.description))"
        case .mptcp(let m): return mptcp(m)
        }
    }

    public static func mptcp(_ m: MPTCPOption) -> String {
        switch m {
        case .capable(let c):
            var parts = ["v\(c.version)", "flags=0x\(String(c.flags, radix: 16))"]
            if let k = c.senderKey { parts.append("skey=0x\(String(k, radix: 16))") }
            if let k = c.receiverKey { parts.append("rkey=0x\(String(k, radix: 16))") }
            if let l = c.dataLevelLength { parts.append("len=\(l)") }
            if let s = c.checksum { parts.append("csum=0x\(String(s, radix: 16))") }
            return "MP_CAPABLE(" + parts.joined(separator: ",") + ")"
        case .join(let j):
            switch j.stage {
            case let .syn(t, n): return "MP_JOIN(syn,token=0x\(String(t, radix: 16)),nonce=\(n),id=\(j.addressID)\(j.backup ? ",backup" : ""))"
            case let .synAck(h, n): return "MP_JOIN(synack,hmac=0x\(String(h, radix: 16)),nonce=\(n),id=\(j.addressID))"
            case let .ack(h): return "MP_JOIN(ack,hmac=\(h.hexString))"
            }
        case .dss(let d):
            var parts: [String] = []
            if let a = d.dataACK { parts.append("dack=\(a)") }
            if let m = d.mapping {
                parts.append("dsn=\(m.dataSequenceNumber)")
                parts.append("ssn=\(m.subflowSequenceNumber)")
                parts.append("len=\(m.dataLevelLength)")
                if let c = m.checksum { parts.append("csum=0x\(String(c, radix: 16))") }
            }
            if d.isDataFIN { parts.append("fin") }
            return "DSS(" + parts.joined(separator: ",") + ")"
        case .addAddress(let a):
            var parts = ["id=\(a.addressID)", a.address.description]
            if let p = a.port { parts.append("port=\(p)") }
            if a.isEcho { parts.append("echo") }
            if a.encoding == .v0 { parts.append("v0") }
            return "ADD_ADDR(" + parts.joined(separator: ",") + ")"
        case .removeAddress(let r): return "REMOVE_ADDR(" + r.addressIDs.map(String.init).joined(separator: ",") + ")"
        case .priority(let p): return "MP_PRIO(\(p.backup ? "backup" : "regular"))"
        case .fail(let f): return "MP_FAIL(dsn=\(f.dataSequenceNumber))"
        case .fastClose: return "MP_FASTCLOSE"
        case .reset(let r): return "MP_TCPRST(reason=\(r.reason)\(r.isTransient ? ",transient" : ""))"
        case .other(let o): return "\(o.subtype.name)(\(o.data.hexString))"
        }
    }

    /// Short name of an option for change lists: `MP_CAPABLE`, `MSS`, `Kind99`.
    public static func optionName(kind: UInt8, subtype: UInt8?) -> String {
        if kind == 30, let s = subtype { return MPTCPSubtype(s).name }
        return TCPOptionKind(kind).name
    }

    public static func value(_ v: Value) -> String {
        switch v {
        case .none: return "-"
        case .number(let n): return String(n)
        case .bool(let b): return b ? "1" : "0"
        case .bytes(let b): return b.hexString
        case .address(let a): return a.description
        case .flags(let f): return f.description
        case .option(let o): return option(o)
        }
    }

    /// A change in tracebox-like style: `-TCPOption(MP_CAPABLE)`, `TCP::SeqNumber(1000→5)`.
    public static func change(_ c: Change) -> String {
        switch c.field {
        case .option(let k, let s):
            let name = optionName(kind: k, subtype: s)
            switch c.change {
            case .removed: return "-TCPOption(\(name))"
            case .nopped: return "~TCPOption(\(name)→NOPs)"
            case .eolReplaced: return "~TCPOption(\(name)→EOL)"
            case .added: return "+TCPOption(\(value(c.received)))"
            case .modified: return "TCPOption(\(name)) \(value(c.sent))→\(value(c.received))"
            }
        case .optionField(let k, let s, let n):
            return "TCPOption(\(optionName(kind: k, subtype: s))).\(n) \(value(c.sent))→\(value(c.received))"
        case .tcpChecksum:
            return "TCP::Checksum(changed beyond the quote)"
        default:
            let layer = c.layer == .ip ? "IP" : c.layer == .ipv6 ? "IPv6" : c.layer == .payload ? "Payload" : "TCP"
            if case .payload = c.field { return "Payload(changed)" }
            return "\(layer)::\(c.field.name)(\(value(c.sent))→\(value(c.received)))"
        }
    }
}

public enum WireJSON {
    public static func value(_ v: Value) -> JSON {
        switch v {
        case .none: return .null
        case .number(let n): return .number(n)
        case .bool(let b): return .bool(b)
        case .bytes(let b): return .string(b.hexString)
        case .address(let a): return .string(a.description)
        case .flags(let f): return .string(f.description)
        case .option(let o): return .string(WireText.option(o))
        }
    }

    public static func option(_ o: TCPOption) -> JSON {
        var m: [(String, JSON)] = [("kind", .number(o.kind.rawValue)), ("name", .string(o.kind.name)),
                                   ("length", .number(o.encodedLength))]
        if let s = o.mptcpSubtype { m += [("subtype", .number(s.rawValue)), ("subtype_name", .string(s.name))] }
        m.append(("text", .string(WireText.option(o))))
        if let b = try? o.encoded() { m.append(("hex", .string(b.hexString))) }
        return .object(m)
    }

    /// The probe as decoded fields (`sent` in the trace document).
    public static func packet(_ p: IPPacket) -> JSON {
        var m: [(String, JSON)] = []
        switch p.ip {
        case .v4(let h):
            m.append(("ip", .object([("version", 4), ("src", .string(h.source.description)), ("dst", .string(h.destination.description)),
                                     ("ttl", .number(h.ttl)), ("dscp", .number(h.dscp)), ("ecn", .number(h.ecn)),
                                     ("id", .number(h.identification)), ("df", .bool(h.dontFragment)), ("length", .number(h.totalLength))])))
        case .v6(let h):
            m.append(("ip", .object([("version", 6), ("src", .string(h.source.description)), ("dst", .string(h.destination.description)),
                                     ("hlim", .number(h.hopLimit)), ("tclass", .number(h.trafficClass)),
                                     ("flowlabel", .number(h.flowLabel)), ("plen", .number(h.payloadLength))])))
        }
        if case .tcp(let s) = p.transport {
            let h = s.header
            m.append(("tcp", .object([("sport", .number(h.sourcePort)), ("dport", .number(h.destinationPort)),
                                      ("seq", .number(h.sequenceNumber)), ("ack", .number(h.acknowledgmentNumber)),
                                      ("flags", .string(h.flags.description)), ("window", .number(h.window)),
                                      ("checksum", .number(h.checksum)),
                                      ("options", .array(h.options.options.map(option))),
                                      ("payload_bytes", .number(s.payload.count))])))
        }
        return .object(m)
    }

    public static func change(_ c: Change) -> JSON {
        var m: [(String, JSON)] = [("layer", .string(c.layer.rawValue)), ("field", .string(c.field.name))]
        switch c.field {
        case .option(let k, let s):
            m += [("kind", .number(k)), ("subtype", .optional(s))]
        case .optionField(let k, let s, _):
            m = [("layer", .string(c.layer.rawValue)), ("field", "option"), ("kind", .number(k)), ("subtype", .optional(s)),
                 ("option_field", .string(c.field.name))]
        default: break
        }
        m += [("change", .string(c.change.rawValue)), ("sent", value(c.sent)), ("received", value(c.received))]
        return .compact(m)
    }

    public static func finding(_ f: Finding) -> JSON {
        let d = f.detail
        let detail = JSON.compact([
            ("kind", .optional(d.kind)), ("subtype", .optional(d.subtype)), ("field", d.field.map { .string($0) } ?? .null),
            ("sent", d.sent.map(value) ?? .null), ("received", d.received.map(value) ?? .null),
            ("bytes", .optional(d.quotedBytes)), ("version", .optional(d.version)), ("flags", .optional(d.flags)),
            ("note", d.note.map { .string($0) } ?? .null),
        ])
        return .compact([("id", .string(f.id.rawValue)), ("hop", .number(f.hop)), ("after", .optional(f.after)), ("detail", detail)])
    }
}
