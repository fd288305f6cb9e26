/// Netlink sock_diag (inet_diag) messages: the kernel's own view of sockets, as `ss` reads it.
///
/// Netlink headers and attributes are in host byte order; this tool runs on little-endian Linux
/// (x86-64, arm64), so they are read little-endian. Ports and addresses inside the socket id are
/// in network byte order. Every parser here is total: any bytes give a value or a `WireError`.

/// One netlink message (struct nlmsghdr and its payload).
public struct NetlinkMessage: Hashable, Sendable {
    public var type: UInt16
    public var flags: UInt16
    public var sequence: UInt32
    public var portID: UInt32
    public var payload: [UInt8]

    public static let noop: UInt16 = 1
    public static let error: UInt16 = 2
    public static let done: UInt16 = 3
    /// SOCK_DIAG_BY_FAMILY: an inet_diag request or answer.
    public static let sockDiagByFamily: UInt16 = 20

    public static let flagRequest: UInt16 = 0x1
    public static let flagMulti: UInt16 = 0x2
    /// NLM_F_ROOT | NLM_F_MATCH: every matching socket, not one.
    public static let flagDump: UInt16 = 0x300

    public init(type: UInt16, flags: UInt16, sequence: UInt32, portID: UInt32 = 0, payload: [UInt8]) {
        self.type = type
        self.flags = flags
        self.sequence = sequence
        self.portID = portID
        self.payload = payload
    }

    /// The messages of one datagram. A length below the header or past the end is an error,
    /// never a trap or an endless loop.
    public static func parseAll(_ bytes: [UInt8]) throws -> [NetlinkMessage] {
        var out: [NetlinkMessage] = []
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= 16 else { throw WireError.truncated("netlink header at byte \(at)", need: 16, have: bytes.count - at) }
            let length = Int(LE.u32(bytes, at))
            guard length >= 16 else { throw WireError(.invalidField, "netlink message at byte \(at): length \(length) is below the 16-byte header") }
            guard length <= bytes.count - at else { throw WireError.truncated("netlink message at byte \(at)", need: length, have: bytes.count - at) }
            out.append(NetlinkMessage(type: LE.u16(bytes, at + 4), flags: LE.u16(bytes, at + 6), sequence: LE.u32(bytes, at + 8),
                                      portID: LE.u32(bytes, at + 12), payload: Array(bytes[(at + 16)..<(at + length)])))
            at += align4(length)
        }
        return out
    }

    public func serialized() -> [UInt8] {
        var b: [UInt8] = []
        LE.put(UInt32(16 + payload.count), &b)
        LE.put(type, &b)
        LE.put(flags, &b)
        LE.put(sequence, &b)
        LE.put(portID, &b)
        return b + payload
    }
}

/// One netlink attribute (struct nlattr): type without the NESTED / NET_BYTEORDER bits, and value.
public struct NetlinkAttribute: Hashable, Sendable {
    public var type: UInt16
    public var isNested: Bool
    public var value: [UInt8]

    public init(type: UInt16, isNested: Bool = false, value: [UInt8]) {
        self.type = type
        self.isNested = isNested
        self.value = value
    }

    /// The attributes packed in `bytes` (a message tail or a nested attribute's value).
    public static func parseAll(_ bytes: [UInt8]) throws -> [NetlinkAttribute] {
        var out: [NetlinkAttribute] = []
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= 4 else { throw WireError.truncated("netlink attribute at byte \(at)", need: 4, have: bytes.count - at) }
            let length = Int(LE.u16(bytes, at))
            guard length >= 4 else { throw WireError(.invalidField, "netlink attribute at byte \(at): length \(length) is below its 4-byte header") }
            guard length <= bytes.count - at else { throw WireError.truncated("netlink attribute at byte \(at)", need: length, have: bytes.count - at) }
            let rawType = LE.u16(bytes, at + 2)
            out.append(NetlinkAttribute(type: rawType & 0x3fff, isNested: rawType & 0x8000 != 0, value: Array(bytes[(at + 4)..<(at + length)])))
            at += align4(length)
        }
        return out
    }

    public func serialized() -> [UInt8] {
        var b: [UInt8] = []
        LE.put(UInt16(4 + value.count), &b)
        LE.put(type | (isNested ? 0x8000 : 0), &b)
        b += value
        b += [UInt8](repeating: 0, count: align4(b.count) - b.count)
        return b
    }

    /// The value as an integer of exactly its width (host byte order); nil for another size.
    public var u8: UInt8? { value.count == 1 ? value[0] : nil }
    public var u16: UInt16? { value.count == 2 ? LE.u16(value, 0) : nil }
    public var u32: UInt32? { value.count == 4 ? LE.u32(value, 0) : nil }
    public var u64: UInt64? { value.count == 8 ? LE.u64(value, 0) : nil }
    /// A NUL-terminated string value.
    public var string: String { String(decoding: value.prefix { $0 != 0 }, as: UTF8.self) }
}

/// struct inet_diag_sockid: the 4-tuple, interface and kernel cookie of a socket.
public struct InetDiagSocketID: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// The 16 address bytes as sent; IPv4 uses the first 4.
    public var sourceBytes: [UInt8]
    public var destinationBytes: [UInt8]
    public var interface: UInt32
    public var cookie: UInt64

    public static let size = 48
    /// INET_DIAG_NOCOOKIE in both halves: "any socket with this tuple".
    public static let noCookie: UInt64 = .max

    public init(sourcePort: UInt16 = 0, destinationPort: UInt16 = 0, source: IPAddress? = nil, destination: IPAddress? = nil,
                interface: UInt32 = 0, cookie: UInt64 = InetDiagSocketID.noCookie) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        func padded(_ a: IPAddress?) -> [UInt8] { (a?.bytes ?? []) + [UInt8](repeating: 0, count: 16 - (a?.bytes.count ?? 0)) }
        sourceBytes = padded(source)
        destinationBytes = padded(destination)
        self.interface = interface
        self.cookie = cookie
    }

    /// The addresses for `family` (AF_INET 2, AF_INET6 10); nil for another family.
    public func source(family: UInt8) -> IPAddress? { Self.address(sourceBytes, family) }
    public func destination(family: UInt8) -> IPAddress? { Self.address(destinationBytes, family) }

    static func address(_ b: [UInt8], _ family: UInt8) -> IPAddress? {
        switch family {
        case InetDiag.familyIPv4: return .v4(IPv4Address(b[0], b[1], b[2], b[3]))
        case InetDiag.familyIPv6: return IPv6Address(bytes: b).map { .v6($0) }
        default: return nil
        }
    }

    static func parse(_ b: [UInt8], at o: Int) -> InetDiagSocketID {
        var id = InetDiagSocketID()
        id.sourcePort = UInt16(b[o]) << 8 | UInt16(b[o + 1])
        id.destinationPort = UInt16(b[o + 2]) << 8 | UInt16(b[o + 3])
        id.sourceBytes = Array(b[(o + 4)..<(o + 20)])
        id.destinationBytes = Array(b[(o + 20)..<(o + 36)])
        id.interface = LE.u32(b, o + 36)
        id.cookie = UInt64(LE.u32(b, o + 40)) | UInt64(LE.u32(b, o + 44)) << 32
        return id
    }

    func serialized() -> [UInt8] {
        var b: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), UInt8(destinationPort >> 8), UInt8(destinationPort & 0xff)]
        b += sourceBytes + destinationBytes
        LE.put(interface, &b)
        LE.put(UInt32(truncatingIfNeeded: cookie), &b)
        LE.put(UInt32(truncatingIfNeeded: cookie >> 32), &b)
        return b
    }
}

/// One socket in an inet_diag answer (struct inet_diag_msg and its attributes).
public struct InetDiagMessage: Hashable, Sendable {
    public var family: UInt8
    /// The TCP state number (1 ESTABLISHED ... 12 NEW_SYN_RECV).
    public var state: UInt8
    public var timer: UInt8
    public var retransmits: UInt8
    public var id: InetDiagSocketID
    public var expires: UInt32
    public var receiveQueue: UInt32
    public var sendQueue: UInt32
    public var uid: UInt32
    public var inode: UInt32
    public var attributes: [NetlinkAttribute]

    public static let headerSize = 72

    public static func parse(_ payload: [UInt8]) throws -> InetDiagMessage {
        guard payload.count >= headerSize else { throw WireError.truncated("inet_diag_msg", need: headerSize, have: payload.count) }
        return InetDiagMessage(family: payload[0], state: payload[1], timer: payload[2], retransmits: payload[3],
                               id: InetDiagSocketID.parse(payload, at: 4), expires: LE.u32(payload, 52),
                               receiveQueue: LE.u32(payload, 56), sendQueue: LE.u32(payload, 60), uid: LE.u32(payload, 64),
                               inode: LE.u32(payload, 68), attributes: try NetlinkAttribute.parseAll(Array(payload[headerSize...])))
    }

    public var source: IPAddress? { id.source(family: family) }
    public var destination: IPAddress? { id.destination(family: family) }

    public func attribute(_ type: UInt16) -> NetlinkAttribute? { attributes.first { $0.type == type } }

    /// The state as `ss` names it.
    public var stateName: String { InetDiag.stateName(state) }

    /// INET_DIAG_INFO read as struct mptcp_info: only meaningful in an answer about IPPROTO_MPTCP
    /// sockets (a TCP answer carries struct tcp_info there).
    public var mptcpInfo: KernelMPTCPInfo? { attribute(InetDiag.attrInfo).flatMap { KernelMPTCPInfo.decode($0.value) } }

    /// INET_DIAG_ULP_INFO: the upper-layer protocol of a TCP socket ("mptcp" on a subflow, "tls").
    public func ulp() throws -> ULPInfo? {
        guard let a = attribute(InetDiag.attrULPInfo) else { return nil }
        let inner = try NetlinkAttribute.parseAll(a.value)
        var info = ULPInfo(name: inner.first { $0.type == InetDiag.ulpName }?.string ?? "")
        if let m = inner.first(where: { $0.type == InetDiag.ulpMPTCP }) {
            info.mptcp = MPTCPSubflowInfo(try NetlinkAttribute.parseAll(m.value))
        }
        return info
    }
}

/// What INET_DIAG_ULP_INFO says about a TCP socket.
public struct ULPInfo: Hashable, Sendable {
    public var name: String
    public var mptcp: MPTCPSubflowInfo?
    public init(name: String, mptcp: MPTCPSubflowInfo? = nil) {
        self.name = name
        self.mptcp = mptcp
    }
}

/// The MPTCP subflow context of a TCP socket (INET_ULP_INFO_MPTCP, net/mptcp/diag.c): what
/// `ss -ti` prints after "tcp-ulp-mptcp". A field the kernel did not send, or sent with an
/// unexpected size, is nil.
public struct MPTCPSubflowInfo: Hashable, Sendable {
    public var remoteToken: UInt32?
    public var localToken: UInt32?
    public var relativeWriteSequence: UInt32?
    public var mapSequence: UInt64?
    public var mapSubflowSequence: UInt32?
    public var ssnOffset: UInt32?
    public var mapDataLength: UInt16?
    public var flags: UInt32?
    public var remoteID: UInt8?
    public var localID: UInt8?

    /// MPTCP_SUBFLOW_FLAG_* (linux/mptcp.h) with the letter `ss` prints for each.
    public static let flagLetters: [(UInt32, Character, String)] = [
        (0x001, "M", "mp_capable_remote"), (0x002, "m", "mp_capable_local"), (0x004, "J", "mp_join_remote"),
        (0x008, "j", "mp_join_local"), (0x010, "B", "backup_remote"), (0x020, "b", "backup_local"),
        (0x040, "e", "fully_established"), (0x080, "c", "connected"), (0x100, "v", "map_valid"),
    ]

    public init() {}

    init(_ attrs: [NetlinkAttribute]) {
        for a in attrs {
            switch a.type {
            case 1: remoteToken = a.u32
            case 2: localToken = a.u32
            case 3: relativeWriteSequence = a.u32
            case 4: mapSequence = a.u64
            case 5: mapSubflowSequence = a.u32
            case 6: ssnOffset = a.u32
            case 7: mapDataLength = a.u16
            case 8: flags = a.u32
            case 9: remoteID = a.u8
            case 10: localID = a.u8
            default: break // MPTCP_SUBFLOW_ATTR_PAD and newer attributes
            }
        }
    }

    public func has(_ flag: UInt32) -> Bool { (flags ?? 0) & flag != 0 }
    /// The flags as `ss` prints them ("Mmec").
    public var flagLetters: String { String(Self.flagLetters.filter { has($0.0) }.map { $0.1 }) }
    /// The flags by name, for JSON.
    public var flagNames: [String] { Self.flagLetters.filter { has($0.0) }.map { $0.2 } }
}

/// What one inet_diag request got back: the sockets, and how the exchange ended.
public struct InetDiagAnswer: Hashable, Sendable {
    public var sockets: [InetDiagMessage] = []
    /// NLMSG_ERROR with a non-zero code (a positive errno: ENOENT for no such socket, ...).
    public var errorNumber: Int32?
    /// NLMSG_DONE seen (a dump is complete), or the single answer of a non-dump request.
    public var complete = false
    public init() {}
}

public enum InetDiag {
    public static let familyIPv4: UInt8 = 2
    public static let familyIPv6: UInt8 = 10
    public static let protocolTCP: UInt32 = 6
    public static let protocolMPTCP: UInt32 = 262

    // INET_DIAG_* attributes (linux/inet_diag.h).
    public static let attrInfo: UInt16 = 2
    public static let attrProtocol: UInt16 = 10
    public static let attrULPInfo: UInt16 = 19
    public static let requestProtocol: UInt16 = 3
    static let ulpName: UInt16 = 1
    static let ulpMPTCP: UInt16 = 3

    /// idiag_ext bit asking for INET_DIAG_INFO.
    public static let extensionInfo: UInt8 = 1 << (2 - 1)
    /// Every state but TIME_WAIT and NEW_SYN_RECV (sockets that have a full socket behind them).
    public static let connectedStates: UInt32 = 0xfff & ~(1 << 6) & ~1

    /// A SOCK_DIAG_BY_FAMILY request (struct inet_diag_req_v2). IPPROTO_MPTCP does not fit the
    /// 8-bit protocol field, so it travels in an INET_DIAG_REQ_PROTOCOL attribute, as `ss -M` sends it.
    public static func request(family: UInt8, protocol proto: UInt32, states: UInt32 = connectedStates, extensions: UInt8 = extensionInfo,
                               id: InetDiagSocketID = InetDiagSocketID(), dump: Bool = true, sequence: UInt32 = 1) -> [UInt8] {
        var body: [UInt8] = [family, UInt8(truncatingIfNeeded: proto), extensions, 0]
        LE.put(states, &body)
        body += id.serialized()
        if proto > 255 {
            var v: [UInt8] = []
            LE.put(proto, &v)
            body += NetlinkAttribute(type: requestProtocol, value: v).serialized()
        }
        return NetlinkMessage(type: NetlinkMessage.sockDiagByFamily,
                              flags: NetlinkMessage.flagRequest | (dump ? NetlinkMessage.flagDump : 0),
                              sequence: sequence, payload: body).serialized()
    }

    /// The answer in `datagrams` (as received, one array per recv), for request `sequence`.
    /// Messages of other sequences are skipped; anything after NLMSG_DONE or an error is ignored.
    public static func parseAnswer(_ datagrams: [[UInt8]], sequence: UInt32) throws -> InetDiagAnswer {
        var answer = InetDiagAnswer()
        for d in datagrams {
            for m in try NetlinkMessage.parseAll(d) where m.sequence == sequence {
                switch m.type {
                case NetlinkMessage.done:
                    answer.complete = true
                    return answer
                case NetlinkMessage.error:
                    guard m.payload.count >= 4 else { throw WireError.truncated("NLMSG_ERROR", need: 4, have: m.payload.count) }
                    let code = Int32(bitPattern: LE.u32(m.payload, 0))
                    // Zero is an acknowledgement; the kernel sends negative errno values.
                    if code != 0 { answer.errorNumber = code == .min ? .max : abs(code) }
                    answer.complete = true
                    return answer
                case NetlinkMessage.sockDiagByFamily:
                    answer.sockets.append(try InetDiagMessage.parse(m.payload))
                    if m.flags & NetlinkMessage.flagMulti == 0 {
                        answer.complete = true
                        return answer
                    }
                default:
                    continue // NLMSG_NOOP, NLMSG_OVERRUN and unknown types carry no socket
                }
            }
        }
        return answer
    }

    public static func stateName(_ s: UInt8) -> String {
        let names = ["UNKNOWN", "ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "UNCONN",
                     "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING", "NEW-SYN-RECV"]
        return Int(s) < names.count ? names[Int(s)] : "STATE-\(s)"
    }
}

/// The fields of `struct mptcp_info` (linux/mptcp.h) this tool reports: what getsockopt(SOL_MPTCP,
/// MPTCP_INFO) and INET_DIAG_INFO of an MPTCP socket both carry.
public struct KernelMPTCPInfo: Sendable, Hashable {
    /// Additional subflows (the initial one is not counted).
    public var subflows: UInt8
    public var addAddrSignal: UInt8
    public var addAddrAccepted: UInt8
    public var subflowsMax: UInt8 = 0
    public var addAddrAcceptedMax: UInt8 = 0
    public var flags: UInt32
    public var token: UInt32
    public var writeSequence: UInt64 = 0
    public var sendUnacknowledged: UInt64 = 0
    public var receiveNext: UInt64 = 0
    public var checksumEnabled: Bool
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var bytesAcked: UInt64

    public static let flagFallback: UInt32 = 1
    public static let flagRemoteKeyReceived: UInt32 = 2
    public var fallback: Bool { flags & Self.flagFallback != 0 }
    public var remoteKeyReceived: Bool { flags & Self.flagRemoteKeyReceived != 0 }

    public init(subflows: UInt8 = 0, addAddrSignal: UInt8 = 0, addAddrAccepted: UInt8 = 0, flags: UInt32 = 0, token: UInt32 = 0,
                checksumEnabled: Bool = false, bytesSent: UInt64 = 0, bytesReceived: UInt64 = 0, bytesAcked: UInt64 = 0) {
        self.subflows = subflows
        self.addAddrSignal = addAddrSignal
        self.addAddrAccepted = addAddrAccepted
        self.flags = flags
        self.token = token
        self.checksumEnabled = checksumEnabled
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.bytesAcked = bytesAcked
    }

    /// Decodes the kernel's bytes (host byte order); nil when shorter than the 80 bytes of the
    /// fields read here (kernels before 6.x send less).
    public static func decode(_ b: [UInt8]) -> KernelMPTCPInfo? {
        guard b.count >= 80 else { return nil }
        var i = KernelMPTCPInfo(subflows: b[0], addAddrSignal: b[1], addAddrAccepted: b[2], flags: LE.u32(b, 8), token: LE.u32(b, 12),
                                checksumEnabled: b[42] != 0, bytesSent: LE.u64(b, 56), bytesReceived: LE.u64(b, 64), bytesAcked: LE.u64(b, 72))
        i.subflowsMax = b[3]
        i.addAddrAcceptedMax = b[5]
        i.writeSequence = LE.u64(b, 16)
        i.sendUnacknowledged = LE.u64(b, 24)
        i.receiveNext = LE.u64(b, 32)
        return i
    }
}

/// Little-endian (host order on the supported platforms) reads and writes; callers check bounds.
enum LE {
    static func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    static func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * $1) } }
    static func u64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * $1) } }
    static func put<T: FixedWidthInteger>(_ v: T, _ b: inout [UInt8]) {
        for i in 0..<(T.bitWidth / 8) { b.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }
}

func align4(_ n: Int) -> Int { (n + 3) & ~3 }

/// What the kernel says about one MPTCP socket at one moment: TCP_IS_MPTCP, MPTCP_INFO, and the
/// sock_diag answers about MPTCP sockets and TCP sockets (the subflows among them).
public struct KernelSocketView: Hashable, Sendable {
    /// TCP_IS_MPTCP: true while the socket is MPTCP, false after a fallback; nil when refused.
    public var isMPTCP: Bool?
    /// getsockopt(SOL_MPTCP, MPTCP_INFO), or why the kernel refused it (as it does on a fallback
    /// socket on some kernels: then only sock_diag shows the MPTCP level).
    public var info: KernelMPTCPInfo?
    public var infoError: String?
    /// sock_diag of IPPROTO_MPTCP sockets with our ports (what `ss -M` shows).
    public var mptcpDiag: InetDiagAnswer?
    public var mptcpDiagError: String?
    /// sock_diag of TCP sockets to the peer's port (what `ss -ti` shows; subflows carry ULP "mptcp").
    public var tcpDiag: InetDiagAnswer?
    public var tcpDiagError: String?

    public init(isMPTCP: Bool? = nil, info: KernelMPTCPInfo? = nil, infoError: String? = nil) {
        self.isMPTCP = isMPTCP
        self.info = info
        self.infoError = infoError
    }
}
