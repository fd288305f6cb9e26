#if canImport(Glibc)
import Glibc
#endif
import Wire

/// A connection made by the host's own MPTCP stack (IPPROTO_MPTCP), and what the kernel says
/// about it afterwards: what real applications get on this path.
public struct KernelSessionResult: Sendable {
    public enum Outcome: String, Sendable { case connected, refused, unreachable, timeout }
    public var outcome: Outcome
    public var error: String?
    /// TCP_IS_MPTCP: 1 while the socket is MPTCP, 0 after a fallback.
    public var isMPTCP: Bool?
    /// MPTCP_INFO, when the kernel gives it (it refuses on a fallback socket on some kernels).
    public var info: KernelMPTCPInfo?
    public var infoError: String?
    public var bytesSent = 0
    public var received: [UInt8] = []
}

/// The fields of `struct mptcp_info` (linux/mptcp.h) this tool reports.
public struct KernelMPTCPInfo: Sendable, Hashable {
    public var subflows: UInt8
    public var addAddrSignal: UInt8
    public var addAddrAccepted: UInt8
    public var flags: UInt32
    public var token: UInt32
    public var checksumEnabled: Bool
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var bytesAcked: UInt64

    public static let flagFallback: UInt32 = 1
    public static let flagRemoteKeyReceived: UInt32 = 2
    public var fallback: Bool { flags & Self.flagFallback != 0 }
    public var remoteKeyReceived: Bool { flags & Self.flagRemoteKeyReceived != 0 }

    /// Decodes the kernel's bytes (little-endian host); nil when too short.
    public static func decode(_ b: [UInt8]) -> KernelMPTCPInfo? {
        guard b.count >= 80 else { return nil }
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * $1) } }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * $1) } }
        return KernelMPTCPInfo(subflows: b[0], addAddrSignal: b[1], addAddrAccepted: b[2], flags: u32(8), token: u32(12),
                               checksumEnabled: b[42] != 0, bytesSent: u64(56), bytesReceived: u64(64), bytesAcked: u64(72))
    }
}

public enum KernelMPTCPClient {
    static let ipprotoMPTCP: Int32 = 262
    static let solMPTCP: Int32 = 284
    static let mptcpInfo: Int32 = 1
    static let tcpIsMPTCP: Int32 = 43

    /// Connects, sends `payload`, half-closes, reads until the server closes (or `timeout`).
    public static func run(target: IPAddress, port: UInt16, payload: [UInt8], timeout: Double) throws -> KernelSessionResult {
        let family = { if case .v4 = target { return AF_INET } else { return AF_INET6 } }()
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), ipprotoMPTCP)
        guard fd >= 0 else {
            let e = errno
            throw NetIOError(.socketOption, "socket(IPPROTO_MPTCP) failed: \(errnoText(e, capability: nil))"
                + (e == EPROTONOSUPPORT || e == ENOPROTOOPT ? " (MPTCP is disabled: sysctl net.mptcp.enabled=1)" : ""))
        }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var result = KernelSessionResult(outcome: .connected)
        let rc: Int32
        switch target {
        case .v4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: a.bytes) }
            rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        case .v6(let a):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: a.bytes) }
            rc = withUnsafePointer(to: &sin6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        }
        if rc != 0 {
            let e = errno
            result.error = errnoText(e, capability: nil)
            switch e {
            case ECONNREFUSED: result.outcome = .refused
            case EHOSTUNREACH, ENETUNREACH: result.outcome = .unreachable
            default: result.outcome = .timeout
            }
            return result
        }
        var sent = 0
        while sent < payload.count {
            let n = payload[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { result.error = "send: \(errnoText(errno, capability: nil))"; break }
            sent += n
        }
        result.bytesSent = sent
        shutdown(fd, Int32(SHUT_WR))
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            result.received += chunk[0..<n]
        }
        // What the kernel knows after the exchange, before our close (MPTCP_INFO needs an open socket).
        var buffer = [UInt8](repeating: 0, count: 256)
        var length = socklen_t(buffer.count)
        if getsockopt(fd, solMPTCP, mptcpInfo, &buffer, &length) == 0 {
            result.info = KernelMPTCPInfo.decode(Array(buffer[0..<Int(length)]))
        } else {
            result.infoError = errnoText(errno, capability: nil)
        }
        var isMPTCP: Int32 = 0
        var l2 = socklen_t(4)
        if getsockopt(fd, Int32(IPPROTO_TCP), tcpIsMPTCP, &isMPTCP, &l2) == 0 { result.isMPTCP = isMPTCP != 0 }
        return result
    }
}
