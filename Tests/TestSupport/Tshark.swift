import Foundation

/// One frame as tshark dissected it: every requested field with all its occurrences, in order.
public struct TsharkFrame: Sendable {
    public let number: Int
    public let fields: [String: [String]]

    /// All occurrences of a field (empty when tshark did not show it).
    public subscript(_ field: String) -> [String] { fields[field] ?? [] }

    /// Expert items as (severity, message); severities are "error", "warn", "note", "chat".
    public var expertItems: [(severity: String, message: String)] {
        let messages = self["_ws.expert.message"], severities = self["_ws.expert.severity"]
        return messages.enumerated().map { i, m in
            (i < severities.count ? Tshark.severityName(severities[i]) : "?", m)
        }
    }

    /// Whether tshark flagged the frame as malformed (a dissector ran past the data).
    public var isMalformed: Bool { self["frame.protocols"].contains { $0.split(separator: ":").contains("_ws.malformed") } }
}

/// tshark as an independent oracle: dissects a capture file once and returns chosen fields.
/// One invocation per file (tshark takes about a second to start), so tests batch packets.
public enum Tshark {
    /// Runs `tshark -r pcap -T json -e ...` with the given preferences (`-o name:value`) and
    /// returns one frame per packet. Throws when tshark fails or prints something unparsable.
    public static func dissect(pcap: String, fields: [String], preferences: [String: String] = [:]) throws -> [TsharkFrame] {
        var argv = ["tshark", "-n", "-r", pcap, "-T", "json"]
        for (k, v) in preferences.sorted(by: { $0.key < $1.key }) { argv += ["-o", "\(k):\(v)"] }
        let always = ["frame.number", "frame.protocols", "_ws.expert.message", "_ws.expert.severity"]
        var seen = Set<String>()
        for f in always + fields where seen.insert(f).inserted { argv += ["-e", f] }
        let r = try TestShell.run(argv)
        guard r.status == 0 else { throw ShellError(argv: argv, status: r.status, stderr: r.stderr) }
        guard let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] else {
            throw TsharkError(description: "tshark printed no JSON array: \(r.stdout.prefix(200))")
        }
        return try json.map { entry in
            guard let source = entry["_source"] as? [String: Any], let layers = source["layers"] as? [String: Any] else {
                throw TsharkError(description: "tshark JSON entry without _source.layers: \(entry)")
            }
            var out: [String: [String]] = [:]
            for (k, v) in layers {
                if let a = v as? [String] { out[k] = a } else if let s = v as? String { out[k] = [s] }
            }
            guard let n = out["frame.number"]?.first.flatMap(Int.init) else {
                throw TsharkError(description: "tshark JSON entry without frame.number: \(layers)")
            }
            return TsharkFrame(number: n, fields: out)
        }
    }

    /// epan's expert severities (PI_ERROR 0x00800000, PI_WARN 0x00600000, PI_NOTE 0x00400000, PI_CHAT 0x00200000).
    static func severityName(_ raw: String) -> String {
        let v = raw.hasPrefix("0x") ? Int(raw.dropFirst(2), radix: 16) : Int(raw)
        switch v {
        case 0x0080_0000: return "error"
        case 0x0060_0000: return "warn"
        case 0x0040_0000: return "note"
        case 0x0020_0000: return "chat"
        case 0x0010_0000: return "comment"
        default: return raw
        }
    }

    /// tshark's checksum status values (proto_checksum_enum_e): 0 bad, 1 good, 2 unverified, 3 not present, 4 illegal.
    public static let checksumGood = "1"
}

public struct TsharkError: Error, CustomStringConvertible {
    public let description: String
}
