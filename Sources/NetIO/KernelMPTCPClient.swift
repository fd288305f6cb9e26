#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Wire

/// A connection made by the host's own MPTCP stack (IPPROTO_MPTCP), what the kernel says about
/// it while it is open, and the packets it put on the wire: what real applications get on this path.
public struct KernelSessionResult: Sendable {
    public enum Outcome: String, Sendable { case connected, refused, unreachable, timeout }
    public var outcome: Outcome
    public var error: String?
    /// The connection's local end (getsockname), once connected.
    public var localAddress: IPAddress?
    public var localPort: UInt16?
    /// The kernel's view after the data exchange, taken while the connection is established.
    public var established = KernelSocketView()
    /// TCP_IS_MPTCP and MPTCP_INFO again after the close exchange, just before close() (final byte counts).
    public var atClose = KernelSocketView()
    /// The raw sock_diag datagrams of `established` (hidden `--diag-raw`, for test fixtures).
    public var diagDatagrams: [[UInt8]] = []
    public var bytesSent = 0
    public var received: [UInt8] = []
    /// The connection's packets as captured (IP packets with their capture time), when capturing.
    public var packets: [(time: Double, bytes: [UInt8])] = []
    /// Why there are no packets (no CAP_NET_RAW, ...), or packets the capture lost.
    public var captureError: String?
    public var captureDropped = 0
}

public enum KernelMPTCPClient {
    static let ipprotoMPTCP: Int32 = 262
    static let solMPTCP: Int32 = 284
    static let mptcpInfo: Int32 = 1
    static let tcpIsMPTCP: Int32 = 43

    public struct Options: Sendable {
        public var target: IPAddress
        public var port: UInt16
        public var payload: [UInt8]
        /// Socket send/receive timeout in seconds.
        public var timeout: Double
        /// Take the kernel's view once this many bytes came back (the echo), else right after sending.
        public var expectEcho: Bool
        /// Capture the connection's packets on this device ("any" by default); nil: do not capture.
        public var captureDevice: String?
        /// Write the captured packets to this pcap file (raw IP).
        public var pcapPath: String?
        /// Keep the connection open this long after the kernel's view was taken (tests read `ss` meanwhile).
        public var hold: Double = 0

        public init(target: IPAddress, port: UInt16, payload: [UInt8], timeout: Double, expectEcho: Bool,
                    captureDevice: String? = "any", pcapPath: String? = nil, hold: Double = 0) {
            self.target = target
            self.port = port
            self.payload = payload
            self.timeout = timeout
            self.expectEcho = expectEcho
            self.captureDevice = captureDevice
            self.pcapPath = pcapPath
            self.hold = hold
        }
    }

    /// The BPF filter for the connection's packets (every subflow goes to the server's port).
    public static func captureFilter(target: IPAddress, port: UInt16) -> String {
        "\(target.isV4 ? "ip" : "ip6") host \(target) and tcp port \(port)"
    }

    /// Connects, sends the payload, reads the echo (or waits for the first answer bytes), takes
    /// the kernel's view, half-closes and reads until the server closes (or the timeout).
    /// Throws when the socket cannot be made, or when `pcapPath` is given and the capture cannot
    /// be opened; a capture that cannot be opened otherwise is reported in `captureError`.
    public static func run(_ o: Options) throws -> KernelSessionResult {
        var capture: BackgroundCapture?
        var captureError: String?
        if let device = o.captureDevice {
            do {
                capture = try BackgroundCapture(PacketCapture.Options(device: device, filter: captureFilter(target: o.target, port: o.port),
                                                                      bufferSize: 32 << 20))
            } catch let e as NetIOError {
                if o.pcapPath != nil { throw e }
                captureError = e.message
            } catch let e as PrivilegeError {
                if o.pcapPath != nil { throw e }
                captureError = "\(e)"
            }
        }
        let writer: PcapFileWriter?
        var result: KernelSessionResult
        do {
            writer = try o.pcapPath.map { try PcapFileWriter(path: $0) }
            result = try connectAndExchange(o)
        } catch {
            _ = capture?.stop()
            throw error
        }
        if let capture {
            // The last FIN/ACKs: give them a moment to reach the capture.
            usleep(150_000)
            let (packets, dropped, failure) = capture.stop()
            result.packets = packets.compactMap { p in p.packet.map { (p.timestamp.timeInterval, $0) } }
            result.captureDropped = dropped
            captureError = failure
            if let writer {
                for p in packets where p.network != nil { try writer.write(p) }
            }
        }
        try writer?.close()
        result.captureError = captureError
        return result
    }

    static func connectAndExchange(_ o: Options) throws -> KernelSessionResult {
        let family = o.target.isV4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), ipprotoMPTCP)
        guard fd >= 0 else {
            let e = errno
            throw NetIOError(.socketOption, "socket(IPPROTO_MPTCP) failed: \(errnoText(e, capability: nil))"
                + (e == EPROTONOSUPPORT || e == ENOPROTOOPT ? " (MPTCP is disabled: sysctl net.mptcp.enabled=1)" : ""))
        }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(o.timeout), tv_usec: Int((o.timeout - Double(Int(o.timeout))) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var result = KernelSessionResult(outcome: .connected)
        var storage = Resolver.sockaddrStorage(o.target, port: o.port)
        let length = o.target.isV4 ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
        let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(length)) } }
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
        (result.localAddress, result.localPort) = localEnd(fd)

        var sent = 0
        while sent < o.payload.count {
            let n = o.payload[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { result.error = "send: \(errnoText(errno, capability: nil))"; break }
            sent += n
        }
        result.bytesSent = sent
        // The view is taken while the connection is established: after the echo came back (the
        // kernel has decided about fallback by then), or once the first answer bytes arrive.
        var chunk = [UInt8](repeating: 0, count: 65536)
        var open = true
        let wanted = o.expectEcho ? sent : 1
        while result.received.count < wanted {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { open = n < 0; break }
            result.received += chunk[0..<n]
        }
        (result.established, result.diagDatagrams) = view(fd, o, local: result.localPort)
        if o.hold > 0 { usleep(UInt32(min(o.hold, 60) * 1e6)) }
        shutdown(fd, Int32(SHUT_WR))
        while open {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            result.received += chunk[0..<n]
        }
        (result.atClose, _) = view(fd, o, local: nil)
        return result
    }

    /// TCP_IS_MPTCP, MPTCP_INFO and (when `local` is given) the sock_diag answers.
    static func view(_ fd: Int32, _ o: Options, local: UInt16?) -> (KernelSocketView, [[UInt8]]) {
        var v = KernelSocketView()
        var buffer = [UInt8](repeating: 0, count: 256)
        var length = socklen_t(buffer.count)
        if getsockopt(fd, solMPTCP, mptcpInfo, &buffer, &length) == 0 {
            v.info = KernelMPTCPInfo.decode(Array(buffer[0..<Int(length)]))
            if v.info == nil { v.infoError = "MPTCP_INFO has \(length) bytes, fewer than this tool reads (80)" }
        } else {
            v.infoError = errnoText(errno, capability: nil)
        }
        var isMPTCP: Int32 = 0
        var l2 = socklen_t(4)
        if getsockopt(fd, Int32(IPPROTO_TCP), tcpIsMPTCP, &isMPTCP, &l2) == 0 { v.isMPTCP = isMPTCP != 0 }
        guard let local else { return (v, []) }
        var raw: [[UInt8]] = []
        let family = o.target.isV4 ? InetDiag.familyIPv4 : InetDiag.familyIPv6
        do {
            let r = try SockDiag.dump(family: family, protocol: InetDiag.protocolMPTCP,
                                      id: InetDiagSocketID(sourcePort: local, destinationPort: o.port), sequence: 1)
            v.mptcpDiag = r.answer
            raw += r.datagrams
        } catch let e as NetIOError {
            v.mptcpDiagError = e.message
        } catch {
            v.mptcpDiagError = "\(error)"
        }
        do {
            // Joined subflows have other source ports: ask for every TCP socket to the server's port.
            let r = try SockDiag.dump(family: family, protocol: InetDiag.protocolTCP,
                                      id: InetDiagSocketID(destinationPort: o.port), sequence: 2)
            v.tcpDiag = r.answer
            raw += r.datagrams
        } catch let e as NetIOError {
            v.tcpDiagError = e.message
        } catch {
            v.tcpDiagError = "\(error)"
        }
        return (v, raw)
    }

    static func localEnd(_ fd: Int32) -> (IPAddress?, UInt16?) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard rc == 0 else { return (nil, nil) }
        guard let address = withUnsafePointer(to: &storage, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Resolver.address(from: $0) } })
        else { return (nil, nil) }
        // sin_port and sin6_port sit at the same offset, in network order.
        let port = withUnsafeBytes(of: storage) { UInt16($0[2]) << 8 | UInt16($0[3]) }
        return (address, port)
    }
}

/// A capture read on its own thread while the caller blocks in socket calls, so the kernel's
/// ring cannot overflow during a long transfer.
final class BackgroundCapture {
    private let capture: PacketCapture
    private let lock = NSLock()
    private var packets: [CapturedPacket] = []
    private var failure: String?
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)

    init(_ options: PacketCapture.Options) throws {
        capture = try PacketCapture(options: options)
        let thread = Thread { [self] in
            while !lock.withLock({ stopping }) {
                do {
                    if let p = try capture.next(timeout: 0.05) { lock.withLock { packets.append(p) } }
                } catch let e as NetIOError {
                    lock.withLock { failure = e.message }
                    break
                } catch {
                    break
                }
            }
            done.signal()
        }
        thread.start()
    }

    /// Stops the reader, drains what is left, closes the capture.
    func stop() -> ([CapturedPacket], dropped: Int, failure: String?) {
        lock.withLock { stopping = true }
        done.wait()
        let rest = (try? capture.drain()) ?? []
        let dropped = (try? capture.statistics().dropped) ?? 0
        capture.close()
        return lock.withLock { (packets + rest, dropped, failure) }
    }
}
