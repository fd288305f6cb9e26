import CPcap
#if canImport(Glibc)
import Glibc
#endif

/// Owns one pcap_t: every libpcap call on it goes through here and is checked.
final class PcapHandle {
    private(set) var pointer: OpaquePointer?
    let source: String

    init(_ pointer: OpaquePointer, source: String) {
        self.pointer = pointer
        self.source = source
    }

    deinit { close() }

    func close() {
        if let pointer { pcap_close(pointer) }
        pointer = nil
    }

    func live() throws -> OpaquePointer {
        guard let pointer else { throw NetIOError(.closed, "the capture on \(source) is closed") }
        return pointer
    }

    var lastError: String {
        guard let pointer, let text = pcap_geterr(pointer) else { return "unknown libpcap error" }
        return String(cString: text)
    }

    var linkType: LinkType {
        guard let pointer else { return LinkType(rawValue: -1) }
        return LinkType(rawValue: pcap_datalink(pointer))
    }

    /// Compiles and installs a BPF filter; errors quote the filter text.
    func setFilter(_ expression: String, netmask: UInt32 = PCAP_NETMASK_UNKNOWN) throws {
        let p = try live()
        var program = bpf_program()
        guard pcap_compile(p, &program, expression, 1, netmask) == 0 else {
            throw NetIOError(.captureFilter, "BPF filter \"\(expression)\" does not compile: \(lastError)")
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(p, &program) == 0 else {
            throw NetIOError(.captureFilter, "installing BPF filter \"\(expression)\" on \(source) failed: \(lastError)")
        }
    }

    /// One packet if one is ready: nil when none is (non-blocking) or at the end of a file.
    func nextPacket() throws -> CapturedPacket? {
        let p = try live()
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let result = pcap_next_ex(p, &header, &data)
        switch result {
        case 1:
            guard let header, let data else { return nil }
            let h = header.pointee
            let frame = Array(UnsafeBufferPointer(start: data, count: Int(h.caplen)))
            return CapturedPacket(timestamp: PacketTimestamp(seconds: Int(h.ts.tv_sec), microseconds: Int(h.ts.tv_usec)),
                                  linkType: linkType, frame: frame, originalLength: Int(h.len))
        case 0, PCAP_ERROR_BREAK:
            return nil
        default:
            throw NetIOError(.captureRead, "reading packets from \(source) failed: \(lastError)")
        }
    }
}
