import Wire

/// The option layers of the probe language: one name per TCP option or MPTCP subtype.
enum OptionLayer {
    static let names = ["eol", "nop", "mss", "ws", "sackok", "sack", "ts", "md5", "ao", "tfo", "raw",
                        "mpcapable", "mpjoin", "dss", "addaddr", "rmaddr", "mpprio", "mpfail", "fastclose",
                        "tcprst", "mpexp", "mptcp"]

    static func parse(_ name: String, _ args: inout Arguments) throws -> TCPOption {
        let layer = args.layer
        switch name {
        case "eol": return .endOfList
        case "nop": return .noOperation
        case "mss":
            guard let v = try args.positionalNumber(max: 0xffff, name: "value") ?? args.number("value", max: 0xffff) else {
                throw ProbeError("mss needs a value, e.g. mss(1460)", column: layer.column)
            }
            return .maximumSegmentSize(UInt16(v))
        case "ws", "wscale":
            let v = try args.positionalNumber(max: 255, name: "shift") ?? args.number("shift", max: 255) ?? 7
            return .windowScale(UInt8(v))
        case "sackok", "sack_perm", "sackperm": return .sackPermitted
        case "sack":
            var blocks: [SACKBlock] = []
            while let a = args.takePositional() {
                let parts = a.value.split(separator: "-")
                guard parts.count == 2, let l = Arguments.parseNumber(String(parts[0])), let r = Arguments.parseNumber(String(parts[1])),
                      l <= 0xffff_ffff, r <= 0xffff_ffff else {
                    throw ProbeError("sack blocks are LEFT-RIGHT, e.g. sack(1000-2000)", column: a.column)
                }
                blocks.append(SACKBlock(left: UInt32(l), right: UInt32(r)))
            }
            guard !blocks.isEmpty else { throw ProbeError("sack needs at least one block, e.g. sack(1000-2000)", column: layer.column) }
            return .sack(blocks)
        case "ts":
            let v = try args.number("val", max: 0xffff_ffff) ?? 0
            let e = try args.number("ecr", max: 0xffff_ffff) ?? 0
            return .timestamps(value: UInt32(v), echoReply: UInt32(e))
        case "md5":
            let d = try args.bytes("hex") ?? [UInt8](repeating: 0, count: 16)
            guard d.count == 16 else { throw ProbeError("md5 digest is 16 bytes, not \(d.count)", column: layer.column) }
            return .md5Signature(d)
        case "ao":
            return .raw(kind: TCPOptionKind.authentication.rawValue, data: try args.bytes("hex") ?? [])
        case "tfo":
            let cookie = try args.bytes("cookie") ?? []
            if args.flag("exp") { return .experimental(kind: 254, exid: TCPOptionKind.fastOpenExID, data: cookie) }
            return .fastOpen(cookie: cookie)
        case "raw":
            guard let k = try args.number("kind", max: 255) else { throw ProbeError("raw needs kind=N", column: layer.column) }
            return .raw(kind: UInt8(k), data: try args.bytes("hex") ?? [])
        case "mpcapable", "mpc":
            var version: UInt8 = 1
            if args.flag("v0") { version = 0 }
            if args.flag("v1") { version = 1 }
            if let v = try args.number("version", max: 15) { version = UInt8(v) }
            var flags: UInt8 = MPCapable.hmacSHA
            if let f = args.take("flags") { flags = try mpcFlags(f) }
            var m = MPCapable(version: version, flags: flags)
            m.senderKey = try args.number("skey", max: .max) ?? args.number("key", max: .max)
            m.receiverKey = try args.number("rkey", max: .max)
            m.dataLevelLength = try args.number("len", max: 0xffff).map(UInt16.init)
            m.checksum = try args.number("csum", max: 0xffff).map(UInt16.init)
            // v0 SYNs carry the sender's key; give one when none was written.
            if version == 0 && m.senderKey == nil { m.senderKey = 0x0123_4567_89ab_cdef }
            return .mptcp(.capable(m))
        case "mpjoin":
            let backup = args.flag("backup")
            let id = UInt8(try args.number("id", max: 255) ?? 0)
            var flags: UInt8 = backup ? 1 : 0
            if let f = try args.number("flags", max: 15) { flags = UInt8(f) }
            if let hmac = try args.bytes("hmac") {
                if hmac.count == 20 { return .mptcp(.join(MPJoin(flags: flags, addressID: id, stage: .ack(hmac: hmac)))) }
                guard hmac.count == 8 else {
                    throw ProbeError("mpjoin hmac is 8 bytes (SYN/ACK) or 20 bytes (ACK), not \(hmac.count)", column: layer.column)
                }
                let nonce = UInt32(try args.number("nonce", max: 0xffff_ffff) ?? 0)
                let h = hmac.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                return .mptcp(.join(MPJoin(flags: flags, addressID: id, stage: .synAck(truncatedHMAC: h, senderNonce: nonce))))
            }
            let token = UInt32(try args.number("token", max: 0xffff_ffff) ?? 0)
            let nonce = UInt32(try args.number("nonce", max: 0xffff_ffff) ?? 0)
            return .mptcp(.join(MPJoin(flags: flags, addressID: id, stage: .syn(receiverToken: token, senderNonce: nonce))))
        case "dss":
            let dack = try args.number("dack", max: .max)
            let dack8 = args.flag("dack8") || (dack ?? 0) > 0xffff_ffff
            let dsn = try args.number("dsn", max: .max)
            let dsn4 = args.flag("dsn4")
            let fin = args.flag("fin")
            var mapping: DSS.Mapping?
            if let dsn {
                let ssn = UInt32(try args.number("ssn", max: 0xffff_ffff) ?? 1)
                let len = UInt16(try args.number("len", max: 0xffff) ?? 0)
                mapping = DSS.Mapping(dataSequenceNumber: dsn, subflowSequenceNumber: ssn, dataLevelLength: len)
                if let c = try args.number("csum", max: 0xffff) { mapping?.checksum = UInt16(c) } else if args.flag("csum") {
                    // Computed from the payload when the packet is built (ProbeExpression.packet).
                    mapping?.checksum = ProbeExpression.computeDSSChecksum
                }
                if dsn4 && dsn > 0xffff_ffff { throw ProbeError("dsn does not fit 4 bytes (dsn4)", column: layer.column) }
            }
            return .mptcp(.dss(DSS(dataACK: dack, dataACK64: dack8, mapping: mapping, dsn64: !dsn4, dataFIN: fin)))
        case "addaddr":
            let encoding: AddAddress.Encoding = args.flag("v0") ? .v0 : .v1
            let echo = args.flag("echo")
            let id = UInt8(try args.number("id", max: 255) ?? 1)
            guard let a = args.take("addr") ?? args.takePositional(), let address = IPAddress(a.value) else {
                throw ProbeError("addaddr needs an address, e.g. addaddr(id=1,198.18.9.9)", column: layer.column)
            }
            let port = try args.number("port", max: 0xffff).map(UInt16.init)
            var hmac = try args.number("hmac", max: .max)
            if encoding == .v1 && !echo && hmac == nil { hmac = 0 }
            return .mptcp(.addAddress(AddAddress(encoding: encoding, echo: echo, addressID: id, address: address, port: port, hmac: hmac)))
        case "rmaddr":
            var ids: [UInt8] = []
            while let n = try args.positionalNumber(max: 255, name: "id") { ids.append(UInt8(n)) }
            if let n = try args.number("id", max: 255) { ids.append(UInt8(n)) }
            guard !ids.isEmpty else { throw ProbeError("rmaddr needs address ids, e.g. rmaddr(1,2)", column: layer.column) }
            return .mptcp(.removeAddress(RemoveAddress(addressIDs: ids)))
        case "mpprio":
            let backup = args.flag("backup")
            let id = try args.number("id", max: 255).map(UInt8.init)
            return .mptcp(.priority(MPPriority(backup: backup, addressID: id)))
        case "mpfail":
            return .mptcp(.fail(MPFail(dataSequenceNumber: try args.number("dsn", max: .max) ?? 0)))
        case "fastclose":
            return .mptcp(.fastClose(MPFastClose(receiverKey: try args.number("key", max: .max) ?? 0)))
        case "tcprst":
            let reason = UInt8(try args.number("reason", max: 255) ?? 0)
            return .mptcp(.reset(MPTCPReset(transient: args.flag("transient"), reason: reason)))
        case "mpexp":
            return .mptcp(.other(MPTCPRawOption(subtype: .experimental, data: try args.bytes("hex") ?? [])))
        case "mptcp":
            guard let st = try args.number("subtype", max: 15) else {
                throw ProbeError("mptcp needs subtype=N (0-15)", column: layer.column)
            }
            let flags = UInt8(try args.number("flags", max: 15) ?? 0)
            return .mptcp(.other(MPTCPRawOption(subtype: MPTCPSubtype(UInt8(st)), flags: flags, data: try args.bytes("hex") ?? [])))
        default:
            let near = names.first { $0.hasPrefix(String(name.prefix(2))) }.map { "; did you mean \($0)?" } ?? ""
            throw ProbeError("unknown layer or option \"\(name)\"\(near) (known: ip, ip6, tcp, payload, \(names.joined(separator: ", ")))",
                             column: layer.column)
        }
    }

    /// MP_CAPABLE flags as letters (A..H, e.g. `AH`) or a number.
    static func mpcFlags(_ a: RawArgument) throws -> UInt8 {
        if let n = Arguments.parseNumber(a.value) {
            guard n <= 255 else { throw ProbeError("mpcapable flags do not fit a byte", column: a.column) }
            return UInt8(n)
        }
        var f: UInt8 = 0
        for c in a.value.uppercased() {
            guard let ascii = c.asciiValue, ascii >= UInt8(ascii: "A"), ascii <= UInt8(ascii: "H") else {
                throw ProbeError("mpcapable flags are letters A to H (A=checksum, H=HMAC-SHA256) or a number, not \"\(a.value)\"",
                                 column: a.column)
            }
            f |= 0x80 >> (ascii - UInt8(ascii: "A"))
        }
        return f
    }
}
