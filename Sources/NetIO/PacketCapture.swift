import CPcap
#if canImport(Glibc)
import Glibc
#endif

/// A live libpcap capture in immediate, non-blocking mode.
///
/// Reads never block longer than the timeout given: `next(timeout:)` polls the selectable file
/// descriptor, then drains with pcap_next_ex. Not thread-safe: read from one thread.
public final class PacketCapture {
    public struct Options: Sendable, Equatable {
        /// The device; "any" captures every interface with a Linux cooked header.
        public var device: String
        /// A BPF filter expression (tcpdump syntax), or nil for everything.
        public var filter: String?
        public var snapLength: Int
        /// On "any", ask for the cooked v2 header (interface index); falls back to v1 when refused.
        public var preferCookedV2: Bool
        /// Kernel buffer size in bytes (pcap_set_buffer_size).
        public var bufferSize: Int
        /// Capture in promiscuous mode (not meaningful on "any").
        public var promiscuous: Bool

        public init(device: String = "any", filter: String? = nil, snapLength: Int = 65535,
                    preferCookedV2: Bool = true, bufferSize: Int = 4 << 20, promiscuous: Bool = false) {
            self.device = device
            self.filter = filter
            self.snapLength = snapLength
            self.preferCookedV2 = preferCookedV2
            self.bufferSize = bufferSize
            self.promiscuous = promiscuous
        }
    }

    public let options: Options
    private let handle: PcapHandle

    /// Opens and activates the capture. Throws `.privileges` without CAP_NET_RAW, `.captureOpen`
    /// for a bad device, `.captureFilter` (quoting the filter) for a bad filter.
    public init(options: Options = Options()) throws {
        self.options = options
        guard options.snapLength > 0, options.snapLength <= 262_144 else {
            throw NetIOError(.captureOpen, "snap length \(options.snapLength) must be between 1 and 262144")
        }
        try Privileges.require([.netRaw], for: "Capturing packets on \(options.device)")
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let p = pcap_create(options.device, &errorBuffer) else {
            throw NetIOError(.captureOpen, "pcap_create(\(options.device)) failed: \(withPermissionHint(cString(errorBuffer)))")
        }
        handle = PcapHandle(p, source: options.device)
        do {
            try Self.check(pcap_set_snaplen(p, Int32(options.snapLength)), "pcap_set_snaplen", handle)
            try Self.check(pcap_set_immediate_mode(p, 1), "pcap_set_immediate_mode", handle)
            try Self.check(pcap_set_promisc(p, options.promiscuous ? 1 : 0), "pcap_set_promisc", handle)
            try Self.check(pcap_set_buffer_size(p, Int32(clamping: options.bufferSize)), "pcap_set_buffer_size", handle)
            let activated = pcap_activate(p)
            if activated < 0 {
                let detail = activated == PCAP_ERROR_NO_SUCH_DEVICE ? "no such device"
                    : activated == PCAP_ERROR_PERM_DENIED ? "permission denied (needs CAP_NET_RAW: run as root or setcap)"
                    : activated == PCAP_ERROR_IFACE_NOT_UP ? "interface is down"
                    : handle.lastError
                throw NetIOError(.captureOpen, "pcap_activate(\(options.device)) failed: \(detail)")
            }
            if options.preferCookedV2, handle.linkType == .linuxSLL {
                // Refusal is fine: v1 has everything but the interface index.
                _ = pcap_set_datalink(p, LinkType.linuxSLL2.rawValue)
            }
            guard pcap_setnonblock(p, 1, &errorBuffer) == 0 else {
                throw NetIOError(.captureOpen, "pcap_setnonblock(\(options.device)) failed: \(cString(errorBuffer))")
            }
            if let filter = options.filter { try handle.setFilter(filter) }
        } catch {
            handle.close()
            throw error
        }
    }

    deinit { handle.close() }

    /// Stops the capture. Idempotent; reads afterwards throw `.closed`.
    public func close() { handle.close() }

    /// The link type of the frames (DLT_LINUX_SLL2 or DLT_LINUX_SLL on "any").
    public var linkType: LinkType { handle.linkType }

    /// A descriptor that becomes readable when packets wait, for an outer poll loop.
    public func selectableFileDescriptor() throws -> Int32 {
        let fd = pcap_get_selectable_fd(try handle.live())
        guard fd >= 0 else { throw NetIOError(.captureOpen, "\(options.device) has no selectable descriptor") }
        return fd
    }

    /// Replaces the BPF filter.
    public func setFilter(_ expression: String) throws { try handle.setFilter(expression) }

    /// The next packet, waiting at most `timeout` seconds; nil when none came in time.
    public func next(timeout: Double) throws -> CapturedPacket? {
        if let packet = try handle.nextPacket() { return packet }
        let fd = try selectableFileDescriptor()
        let deadline = monotonicNow() + max(0, timeout)
        while true {
            let remaining = deadline - monotonicNow()
            if remaining <= 0 { return nil }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32(min(remaining * 1000, 1000).rounded(.up)))
            if ready < 0 {
                if errno == EINTR { continue }
                throw NetIOError(.captureRead, "poll on \(options.device) failed: \(errnoText(errno, capability: nil))")
            }
            if let packet = try handle.nextPacket() { return packet }
            if entry.revents & Int16(POLLERR | POLLNVAL) != 0 {
                throw NetIOError(.captureRead, "the capture on \(options.device) reported an error: \(handle.lastError)")
            }
        }
    }

    /// Every packet that is already waiting, without blocking.
    public func drain(limit: Int = .max) throws -> [CapturedPacket] {
        var packets: [CapturedPacket] = []
        while packets.count < limit, let packet = try handle.nextPacket() { packets.append(packet) }
        return packets
    }

    /// Collects packets until `quiet` seconds pass with none, or `maximum` seconds in all.
    public func collect(quiet: Double, maximum: Double) throws -> [CapturedPacket] {
        var packets: [CapturedPacket] = []
        let end = monotonicNow() + maximum
        while monotonicNow() < end {
            guard let packet = try next(timeout: min(quiet, end - monotonicNow())) else { break }
            packets.append(packet)
        }
        return packets
    }

    /// Kernel counters: packets received and dropped by the kernel buffer.
    public func statistics() throws -> (received: Int, dropped: Int) {
        var stats = pcap_stat()
        guard pcap_stats(try handle.live(), &stats) == 0 else {
            throw NetIOError(.captureRead, "pcap_stats(\(options.device)) failed: \(handle.lastError)")
        }
        return (Int(stats.ps_recv), Int(stats.ps_drop))
    }

    private static func check(_ result: Int32, _ function: String, _ handle: PcapHandle) throws {
        guard result == 0 else {
            throw NetIOError(.captureOpen, "\(function)(\(handle.source)) failed: \(handle.lastError)")
        }
    }
}

/// CLOCK_MONOTONIC in seconds.
func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
