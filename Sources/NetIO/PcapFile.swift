import CPcap
#if canImport(Glibc)
import Glibc
#endif

/// Writes packets to a classic pcap file (microsecond timestamps).
///
/// The default link type is raw IP (DLT_RAW 12 for pcap_open_dead on Linux, stored in the file
/// header as LINKTYPE_RAW 101): give it whole IPv4/IPv6 packets. Not thread-safe.
public final class PcapFileWriter {
    public let path: String
    public let linkType: LinkType
    private let handle: PcapHandle
    private var dumper: OpaquePointer?

    public init(path: String, linkType: LinkType = .raw, snapLength: Int = 65535) throws {
        self.path = path
        self.linkType = linkType
        guard let dead = pcap_open_dead(linkType.rawValue, Int32(snapLength)) else {
            throw NetIOError(.pcapFile, "pcap_open_dead(\(linkType), \(snapLength)) failed")
        }
        handle = PcapHandle(dead, source: path)
        guard let dumper = pcap_dump_open(dead, path) else {
            let reason = handle.lastError
            handle.close()
            throw NetIOError(.pcapFile, "cannot create pcap file \(path): \(reason)")
        }
        self.dumper = dumper
    }

    deinit { try? close() }

    /// Appends one packet; the timestamp defaults to now.
    public func write(_ bytes: [UInt8], timestamp: PacketTimestamp? = nil, originalLength: Int? = nil) throws {
        guard let dumper else { throw NetIOError(.closed, "pcap file \(path) is already closed") }
        let ts = timestamp ?? Self.now()
        var header = pcap_pkthdr()
        header.ts.tv_sec = ts.seconds
        header.ts.tv_usec = ts.microseconds
        header.caplen = UInt32(bytes.count)
        header.len = UInt32(max(originalLength ?? bytes.count, bytes.count))
        bytes.withUnsafeBufferPointer { buffer in
            // pcap_dump returns nothing: write errors surface in flush() / close().
            pcap_dump(UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self), &header, buffer.baseAddress)
        }
    }

    /// Appends a captured packet: its network-layer bytes when this file is raw IP, else its frame.
    public func write(_ packet: CapturedPacket) throws {
        if linkType == .raw || linkType == .rawFile {
            guard let network = packet.network else {
                throw NetIOError(.pcapFile, "a \(packet.linkType) frame without an IP packet cannot go into a raw-IP pcap file")
            }
            try write(network.bytes, timestamp: packet.timestamp,
                      originalLength: packet.originalLength - network.linkHeaderLength)
        } else {
            guard packet.linkType == linkType else {
                throw NetIOError(.pcapFile, "a \(packet.linkType) frame cannot go into a \(linkType) pcap file")
            }
            try write(packet.frame, timestamp: packet.timestamp, originalLength: packet.originalLength)
        }
    }

    /// Pushes buffered packets to the file.
    public func flush() throws {
        guard let dumper else { throw NetIOError(.closed, "pcap file \(path) is already closed") }
        guard pcap_dump_flush(dumper) == 0 else {
            throw NetIOError(.pcapFile, "writing pcap file \(path) failed: \(errnoText(errno, capability: nil))")
        }
    }

    /// Flushes and closes the file. Idempotent.
    public func close() throws {
        guard let dumper else { return }
        defer {
            pcap_dump_close(dumper)
            self.dumper = nil
            handle.close()
        }
        guard pcap_dump_flush(dumper) == 0 else {
            throw NetIOError(.pcapFile, "writing pcap file \(path) failed: \(errnoText(errno, capability: nil))")
        }
    }

    static func now() -> PacketTimestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return PacketTimestamp(seconds: Int(ts.tv_sec), microseconds: Int(ts.tv_nsec / 1000))
    }
}

/// Reads a pcap (or pcapng) file with pcap_open_offline.
public final class PcapFileReader {
    public let path: String
    private let handle: PcapHandle

    public init(path: String) throws {
        self.path = path
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let p = pcap_open_offline(path, &errorBuffer) else {
            throw NetIOError(.pcapFile, "cannot read pcap file \(path): \(cString(errorBuffer))")
        }
        handle = PcapHandle(p, source: path)
    }

    deinit { handle.close() }

    public func close() { handle.close() }

    public var linkType: LinkType { handle.linkType }

    /// Installs a BPF filter on the file.
    public func setFilter(_ expression: String) throws { try handle.setFilter(expression) }

    /// The next packet, or nil at the end of the file.
    public func next() throws -> CapturedPacket? { try handle.nextPacket() }

    /// Every remaining packet.
    public func readAll() throws -> [CapturedPacket] {
        var packets: [CapturedPacket] = []
        while let packet = try next() { packets.append(packet) }
        return packets
    }

    /// Every packet of the file at `path`.
    public static func readAll(path: String) throws -> [CapturedPacket] {
        let reader = try PcapFileReader(path: path)
        defer { reader.close() }
        return try reader.readAll()
    }
}
