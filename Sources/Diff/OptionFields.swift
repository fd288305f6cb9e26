import Wire

/// The comparable fields of an option, by name, for field-by-field diffs.
enum OptionFields {
    static func of(_ option: TCPOption) -> [(String, Value)] {
        switch option {
        case .maximumSegmentSize(let v): return [("value", .number(UInt64(v)))]
        case .windowScale(let v): return [("shift", .number(UInt64(v)))]
        case .timestamps(let v, let e): return [("tsval", .number(UInt64(v))), ("tsecr", .number(UInt64(e)))]
        case .sack(let blocks):
            return [("blocks", .bytes(blocks.flatMap { b -> [UInt8] in var w = ByteWriter(); w.write(b.left); w.write(b.right); return w.bytes }))]
        case .fastOpen(let c): return [("cookie", .bytes(c))]
        case .experimental(_, let exid, let d): return [("exid", .number(UInt64(exid))), ("data", .bytes(d))]
        case .md5Signature(let d): return [("digest", .bytes(d))]
        case .raw(_, let d): return [("data", .bytes(d))]
        case .malformed(let m): return [("bytes", .bytes(m.bytes))]
        case .endOfList, .noOperation, .sackPermitted: return []
        case .mptcp(let m): return mptcp(m)
        }
    }

    static func opt<T: FixedWidthInteger>(_ v: T?) -> Value { v.map { .number(UInt64($0)) } ?? .none }

    static func mptcp(_ m: MPTCPOption) -> [(String, Value)] {
        switch m {
        case .capable(let c):
            return [("version", .number(UInt64(c.version))), ("flags", .number(UInt64(c.flags))),
                    ("sender_key", opt(c.senderKey)), ("receiver_key", opt(c.receiverKey)),
                    ("data_level_length", opt(c.dataLevelLength)), ("checksum", opt(c.checksum))]
        case .join(let j):
            var f: [(String, Value)] = [("flags", .number(UInt64(j.flags))), ("address_id", .number(UInt64(j.addressID)))]
            switch j.stage {
            case let .syn(t, n): f += [("token", .number(UInt64(t))), ("nonce", .number(UInt64(n)))]
            case let .synAck(h, n): f += [("hmac", .number(h)), ("nonce", .number(UInt64(n)))]
            case let .ack(h): f += [("hmac", .bytes(h))]
            }
            return f
        case .dss(let d):
            return [("flags", .number(UInt64(d.flags))), ("data_ack", opt(d.dataACK)),
                    ("dsn", opt(d.mapping?.dataSequenceNumber)), ("ssn", opt(d.mapping?.subflowSequenceNumber)),
                    ("data_level_length", opt(d.mapping?.dataLevelLength)), ("checksum", opt(d.mapping?.checksum))]
        case .addAddress(let a):
            return [("flags", .number(UInt64(a.flags))), ("address_id", .number(UInt64(a.addressID))),
                    ("address", .address(a.address)), ("port", opt(a.port)), ("hmac", opt(a.hmac))]
        case .removeAddress(let r): return [("address_ids", .bytes(r.addressIDs))]
        case .priority(let p): return [("flags", .number(UInt64(p.flags))), ("address_id", opt(p.addressID))]
        case .fail(let f): return [("dsn", .number(f.dataSequenceNumber))]
        case .fastClose(let f): return [("key", .number(f.receiverKey))]
        case .reset(let r): return [("flags", .number(UInt64(r.flags))), ("reason", .number(UInt64(r.reason)))]
        case .other(let o): return [("flags", .number(UInt64(o.flags))), ("data", .bytes(o.data))]
        }
    }
}
