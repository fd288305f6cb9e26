import NetIO

/// Writes raw IP packets to a pcap file with NetIO's PcapFileWriter (libpcap's own dumper,
/// DLT_RAW stored as LINKTYPE_RAW 101), so tshark reads exactly the bytes Wire produced.
enum RawIPPcap {
    static func write(_ packets: [[UInt8]], to path: String) throws {
        let writer = try PcapFileWriter(path: path)
        for (i, packet) in packets.enumerated() {
            // One second apart, from a fixed time, so frames are in order and runs are comparable.
            try writer.write(packet, timestamp: PacketTimestamp(seconds: 1_763_700_000 + i, microseconds: 0))
        }
        try writer.close()
    }
}
