#if canImport(Glibc)
import Glibc
#endif
import PacketIO
import Wire

/// The real network for the engines: libnet injection and libpcap capture behind `PacketNetwork`.
///
/// The capture is opened (with its filter) before anything is sent, so no reply can be missed;
/// packets the capture sees leaving this host (our own probes on the `any` device) are skipped.
public final class LiveNetwork: PacketNetwork {
    public struct Options: Sendable {
        public var device: String = "any"
        public var filter: String
        /// SO_MARK on injected packets (the kernel-RST guard lets marked packets pass).
        public var mark: UInt32?
        /// Bind injection to this interface.
        public var interface: String?
        /// Write every packet sent and received to this pcap file.
        public var pcapPath: String?
        /// Local addresses whose packets leave through a socket bound to them (so source-based
        /// policy routing sends them down their own path, e.g. an MP_JOIN from a second address).
        public var boundSources: [IPAddress] = []
        /// Capture snap length and kernel buffer (the ring holds bufferSize / snapLength packets:
        /// a scan needs a short snap length and a large buffer).
        public var snapLength: Int = 65535
        public var bufferSize: Int = 4 << 20

        public init(filter: String, device: String = "any", mark: UInt32? = nil, interface: String? = nil, pcapPath: String? = nil,
                    snapLength: Int = 65535, bufferSize: Int = 4 << 20) {
            self.filter = filter
            self.device = device
            self.mark = mark
            self.interface = interface
            self.pcapPath = pcapPath
            self.snapLength = snapLength
            self.bufferSize = bufferSize
        }
    }

    private let capture: PacketCapture
    private let injector: RawInjector
    private let writer: PcapFileWriter?
    private var boundInjectors: [[UInt8]: RawInjector] = [:]

    public init(options: Options) throws {
        try Privileges.require([.netRaw], for: "sending crafted probes and capturing replies")
        capture = try PacketCapture(options: PacketCapture.Options(device: options.device, filter: options.filter,
                                                                  snapLength: options.snapLength, bufferSize: options.bufferSize))
        injector = try RawInjector(options: RawInjector.Options(mark: options.mark, interface: options.interface))
        writer = try options.pcapPath.map { try PcapFileWriter(path: $0) }
        for a in options.boundSources {
            boundInjectors[a.bytes] = try RawInjector(options: RawInjector.Options(
                mark: options.mark, interface: options.interface, families: [a.bytes.count == 4 ? .v4 : .v6], bindAddress: a.bytes))
        }
    }

    deinit { close() }

    /// Packets the capture received and the kernel dropped (buffer full) so far.
    public func captureStatistics() throws -> (received: Int, dropped: Int) { try capture.statistics() }

    public func close() {
        capture.close()
        injector.close()
        for i in boundInjectors.values { i.close() }
        try? writer?.close()
    }

    public func send(_ packet: [UInt8]) throws {
        _ = try (boundInjectors.isEmpty ? injector : boundInjectors[Self.source(of: packet)] ?? injector).send(packet)
        try writer?.write(packet, timestamp: Self.timestamp(now()))
    }

    public func receive(until deadline: Double) throws -> ReceivedPacket? {
        while true {
            let remaining = deadline - now()
            guard remaining > 0 else { return nil }
            guard let p = try capture.next(timeout: remaining) else { return nil }
            if p.network?.direction == .outgoing { continue }
            guard let bytes = p.packet else { continue }
            try writer?.write(bytes, timestamp: p.timestamp)
            return ReceivedPacket(bytes: bytes, time: p.timestamp.timeInterval)
        }
    }

    /// Wall-clock seconds, the clock of pcap timestamps (so RTTs subtract like with like).
    public func now() -> Double {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return Double(tv.tv_sec) + Double(tv.tv_usec) / 1e6
    }

    /// The source address bytes of an IP packet (empty when too short).
    static func source(of p: [UInt8]) -> [UInt8] {
        guard let first = p.first else { return [] }
        if first >> 4 == 4, p.count >= 20 { return Array(p[12..<16]) }
        if first >> 4 == 6, p.count >= 40 { return Array(p[8..<24]) }
        return []
    }

    static func timestamp(_ t: Double) -> PacketTimestamp {
        let s = Int(t)
        return PacketTimestamp(seconds: s, microseconds: Int((t - Double(s)) * 1e6))
    }
}
