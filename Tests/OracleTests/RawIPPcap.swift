import CPcap
import Foundation

/// Writes raw IP packets to a pcap file with libpcap's own dumper (DLT_RAW, which libpcap
/// stores as LINKTYPE_RAW 101), so tshark reads exactly the bytes Wire produced.
enum RawIPPcap {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func write(_ packets: [[UInt8]], to path: String) throws {
        guard let dead = pcap_open_dead(DLT_RAW, 65535) else { throw Failure(description: "pcap_open_dead(DLT_RAW) failed") }
        defer { pcap_close(dead) }
        guard let dumper = pcap_dump_open(dead, path) else {
            throw Failure(description: "pcap_dump_open(\(path)): \(String(cString: pcap_geterr(dead)))")
        }
        defer { pcap_dump_close(dumper) }
        for (i, packet) in packets.enumerated() {
            var header = pcap_pkthdr()
            header.ts.tv_sec = 1_763_700_000 + i
            header.caplen = UInt32(packet.count)
            header.len = UInt32(packet.count)
            packet.withUnsafeBufferPointer { buf in
                pcap_dump(UnsafeMutablePointer<UInt8>(dumper), &header, buf.baseAddress)
            }
        }
        guard pcap_dump_flush(dumper) == 0 else { throw Failure(description: "pcap_dump_flush(\(path)) failed") }
    }
}
