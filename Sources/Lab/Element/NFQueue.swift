// The element's I/O edge: an NFQUEUE queue (libnetfilter-queue), a raw socket to inject
// packets, and the box's interface addresses. Every C return code is checked in `check`;
// no C pointer leaves this file.

import CNetfilterQueue
import Foundation
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Why the element's I/O failed.
public struct ElementIOError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The C call that failed.
    public let call: String
    public let errno: Int32
    public let hint: String

    public init(call: String, errno: Int32, hint: String = "") {
        self.call = call
        self.errno = errno
        self.hint = hint
    }

    public var description: String {
        let reason = errno != 0 ? String(cString: strerror(errno)) : "failed"
        return "\(call): \(reason)" + (hint.isEmpty ? "" : " (\(hint))")
    }
}

/// The one place where a C status becomes a typed error: `-1` (or any negative value) fails.
@discardableResult
func check(_ call: String, _ rc: Int32, hint: String = "") throws -> Int32 {
    guard rc >= 0 else { throw ElementIOError(call: call, errno: errno, hint: hint) }
    return rc
}

func check<T>(_ call: String, _ pointer: T?, hint: String = "") throws -> T {
    guard let p = pointer else { throw ElementIOError(call: call, errno: errno, hint: hint) }
    return p
}

/// A packet handed to userspace by the kernel.
public struct QueuedPacket: Sendable {
    public var id: UInt32
    /// Nil for a hook number this code does not know.
    public var hook: PacketHook?
    public var bytes: [UInt8]
    /// Index of the interface the packet came in on (0 for locally generated packets).
    public var inputInterface: UInt32
}

/// One NFQUEUE queue, bound for IPv4 and IPv6, copying whole packets.
public final class NFQueue {
    private let handle: OpaquePointer
    private var queue: OpaquePointer?
    private let fd: Int32
    /// Filled by the C callback during `nfq_handle_packet`; the verdicts are given afterwards.
    fileprivate var received: [QueuedPacket] = []
    private var buffer = [UInt8](repeating: 0, count: 0x10000 + 4096)
    /// Packets the kernel dropped because the socket buffer was full (ENOBUFS).
    public private(set) var overruns = 0

    public let number: UInt16

    public init(number: UInt16, maxLength: UInt32 = 4096) throws {
        self.number = number
        handle = try check("nfq_open", nfq_open(), hint: "needs CAP_NET_ADMIN in the namespace")
        fd = nfq_fd(handle)
        // Every stored property is set: a throw from here on runs deinit, which releases the
        // queue and the handle.
        for family in [AF_INET, AF_INET6] {
            // Unbinding fails harmlessly on recent kernels; binding is what must work.
            _ = nfq_unbind_pf(handle, UInt16(family))
            try check("nfq_bind_pf(\(family == AF_INET ? "AF_INET" : "AF_INET6"))", nfq_bind_pf(handle, UInt16(family)))
        }
        let context = Unmanaged.passUnretained(self).toOpaque()
        queue = try check("nfq_create_queue(\(number))",
                          nfq_create_queue(handle, number, nfqCallback, context),
                          hint: "another process may already own queue \(number)")
        try check("nfq_set_mode", nfq_set_mode(queue, UInt8(NFQNL_COPY_PACKET.rawValue), 0xffff))
        try check("nfq_set_queue_maxlen", nfq_set_queue_maxlen(queue, maxLength))
        var big: Int32 = 4 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
        if let q = queue { nfq_destroy_queue(q) }
        nfq_close(handle)
    }

    /// Waits up to `timeout` milliseconds for packets and returns those that arrived (possibly
    /// none). EINTR returns an empty list so the caller can look at its stop flag.
    public func receive(timeout: Int32) throws -> [QueuedPacket] {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, timeout)
        if ready < 0 && errno == EINTR { return [] }
        try check("poll", ready)
        guard ready > 0 else { return [] }
        received.removeAll(keepingCapacity: true)
        // Drain what is there without blocking again.
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { break }
                if errno == ENOBUFS { overruns += 1; continue }
                throw ElementIOError(call: "recv", errno: errno)
            }
            if n == 0 { break }
            _ = buffer.withUnsafeMutableBytes { p in
                nfq_handle_packet(handle, p.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(n))
            }
        }
        return received
    }

    public enum Verdict: Sendable {
        case accept
        case acceptModified([UInt8])
        case drop
    }

    public func setVerdict(id: UInt32, _ v: Verdict) throws {
        switch v {
        case .accept:
            try check("nfq_set_verdict(accept)", nfq_set_verdict(queue, id, UInt32(NF_ACCEPT), 0, nil))
        case .drop:
            try check("nfq_set_verdict(drop)", nfq_set_verdict(queue, id, UInt32(NF_DROP), 0, nil))
        case .acceptModified(let bytes):
            _ = try bytes.withUnsafeBufferPointer { p in
                try check("nfq_set_verdict(accept, \(bytes.count) bytes)",
                          nfq_set_verdict(queue, id, UInt32(NF_ACCEPT), UInt32(bytes.count), p.baseAddress))
            }
        }
    }

    fileprivate func take(_ data: OpaquePointer) -> Int32 {
        guard let hdr = nfq_get_msg_packet_hdr(data) else { return 0 }
        // The header is packed: read its bytes rather than rely on the imported layout.
        let raw = UnsafeRawPointer(hdr)
        let id = UInt32(bigEndian: raw.loadUnaligned(as: UInt32.self))
        let hook = raw.load(fromByteOffset: 6, as: UInt8.self)
        var payload: UnsafeMutablePointer<UInt8>?
        let len = nfq_get_payload(data, &payload)
        guard len >= 0, let payload else {
            // Nothing to look at: let it pass rather than hold it forever.
            _ = nfq_set_verdict(queue, id, UInt32(NF_ACCEPT), 0, nil)
            return 0
        }
        received.append(QueuedPacket(id: id, hook: PacketHook(rawValue: hook),
                                     bytes: Array(UnsafeBufferPointer(start: payload, count: Int(len))),
                                     inputInterface: nfq_get_indev(data)))
        return 0
    }
}

private let nfqCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<nfgenmsg>?, OpaquePointer?,
                                         UnsafeMutableRawPointer?) -> Int32 = { _, _, data, context in
    guard let data, let context else { return 0 }
    return Unmanaged<NFQueue>.fromOpaque(context).takeUnretainedValue().take(data)
}

/// Sends whole IP packets (headers included) from the box, marked so the queue rules skip them.
public final class ElementInjector {
    private let fd4: Int32
    private let fd6: Int32

    public init(mark: UInt32 = ElementPipeline.injectionMark) throws {
        fd4 = try check("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)",
                        socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW)), hint: "needs CAP_NET_RAW")
        do {
            fd6 = try check("socket(AF_INET6, SOCK_RAW, IPPROTO_RAW)",
                            socket(AF_INET6, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW)), hint: "needs CAP_NET_RAW")
        } catch {
            close(fd4)
            throw error
        }
        // Both descriptors are set: a throw from here on runs deinit, which closes them.
        var one: Int32 = 1
        try check("setsockopt(IP_HDRINCL)", setsockopt(fd4, Int32(IPPROTO_IP), IP_HDRINCL, &one, socklen_t(4)))
        var m = mark
        for fd in [fd4, fd6] {
            try check("setsockopt(SO_MARK)", setsockopt(fd, SOL_SOCKET, SO_MARK, &m, socklen_t(4)),
                      hint: "needs CAP_NET_ADMIN")
        }
    }

    deinit {
        close(fd4)
        close(fd6)
    }

    /// Sends a packet to its destination address; the kernel routes it from the box.
    public func send(_ bytes: [UInt8]) throws {
        guard let first = bytes.first else { return }
        let n: Int
        if first >> 4 == 4 {
            guard bytes.count >= 20 else { throw ElementIOError(call: "send", errno: EINVAL, hint: "IPv4 packet shorter than its header") }
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: bytes[16..<20]) }
            n = bytes.withUnsafeBytes { b in
                withUnsafePointer(to: &sa) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd4, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
        } else {
            guard bytes.count >= 40 else { throw ElementIOError(call: "send", errno: EINVAL, hint: "IPv6 packet shorter than its header") }
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: bytes[24..<40]) }
            n = bytes.withUnsafeBytes { b in
                withUnsafePointer(to: &sa) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd6, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
            }
        }
        try check("sendto(\(bytes.count) bytes)", Int32(clamping: n))
    }
}

/// The addresses of the box's interfaces, by interface index.
public enum InterfaceAddresses {
    public static func current() throws -> [UInt32: [IPAddress]] {
        var list: UnsafeMutablePointer<ifaddrs>?
        try check("getifaddrs", getifaddrs(&list))
        defer { freeifaddrs(list) }
        var out: [UInt32: [IPAddress]] = [:]
        var cursor = list
        while let ifa = cursor {
            defer { cursor = ifa.pointee.ifa_next }
            guard let sa = ifa.pointee.ifa_addr, let name = ifa.pointee.ifa_name else { continue }
            let index = if_nametoindex(name)
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                out[index, default: []].append(.v4(IPv4Address(rawValue: UInt32(bigEndian: a))))
            case AF_INET6:
                let bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    withUnsafeBytes(of: p.pointee.sin6_addr) { Array($0) }
                }
                if let a = IPv6Address(bytes: bytes) { out[index, default: []].append(.v6(a)) }
            default:
                break
            }
        }
        return out
    }
}
