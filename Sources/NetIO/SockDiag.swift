#if canImport(Glibc)
import Glibc
#endif
import Wire

/// One request on a NETLINK_SOCK_DIAG socket: the kernel's socket tables, as `ss` reads them.
/// Building the request and parsing the answer are pure (Wire's `InetDiag`); only the socket
/// calls live here.
public enum SockDiag {
    static let netlinkSockDiag: Int32 = 4

    /// Sends `request` and returns the datagrams of the answer to `sequence` (until NLMSG_DONE,
    /// an error, or a single non-multipart answer). Throws `.socketOption` when the netlink socket
    /// fails or no complete answer comes within `timeout` seconds.
    public static func exchange(_ request: [UInt8], sequence: UInt32, timeout: Double = 2) throws -> (answer: InetDiagAnswer, datagrams: [[UInt8]]) {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkSockDiag)
        guard fd >= 0 else { throw NetIOError(.socketOption, "socket(AF_NETLINK, NETLINK_SOCK_DIAG) failed: \(errnoText(errno, capability: nil))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // An unconnected netlink socket sends to the kernel (port id 0).
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == request.count else { throw NetIOError(.socketOption, "sending the sock_diag request failed: \(errnoText(errno, capability: nil))") }
        var datagrams: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                throw NetIOError(.socketOption, e == EAGAIN || e == EWOULDBLOCK
                                 ? "the kernel's sock_diag answer did not complete within \(timeout) s"
                                 : "reading the sock_diag answer failed: \(errnoText(e, capability: nil))")
            }
            datagrams.append(Array(buffer[0..<n]))
            do {
                let answer = try InetDiag.parseAnswer(datagrams, sequence: sequence)
                if answer.complete { return (answer, datagrams) }
            } catch let e as WireError {
                throw NetIOError(.socketOption, "the kernel's sock_diag answer does not parse: \(e.message)")
            }
        }
    }

    /// The sockets of protocol `proto` (IPPROTO_TCP or IPPROTO_MPTCP) matching `id`'s ports
    /// (zero = any), with INET_DIAG_INFO.
    public static func dump(family: UInt8, protocol proto: UInt32, id: InetDiagSocketID, sequence: UInt32) throws -> (answer: InetDiagAnswer, datagrams: [[UInt8]]) {
        try exchange(InetDiag.request(family: family, protocol: proto, id: id, sequence: sequence), sequence: sequence)
    }
}
