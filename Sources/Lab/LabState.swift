// What a lab leaves on disk so that it can be found again: by `lab list`, `lab down`, and after
// a crash (SIGKILL of the process that brought it up, or of the test that owned it).

import Foundation

/// The on-disk record of a lab, `<stateRoot>/<name>/lab.json`.
public struct LabRecord: Codable, Sendable {
    public enum Phase: String, Codable, Sendable { case starting, up }

    public var name: String
    /// The spec in command-line form (`--hop … --server …`).
    public var spec: [String]
    /// Every namespace the lab may have created (written before any is created).
    public var namespaces: [String]
    public var phase: Phase
    /// The process bringing the lab up, and its start time (against pid reuse).
    public var creatorPid: Int32
    public var creatorStart: UInt64?
    /// A process whose death ends the lab (tests); nil for labs that outlive the CLI.
    public var ownerPid: Int32?
    public var ownerStart: UInt64?
    public var created: Date
    /// Seconds `up` took.
    public var upSeconds: Double?

    /// True when the lab can no longer be used by anyone: its owner died, or its creator died
    /// before it was up.
    public var isStale: Bool {
        if let ownerPid, !ProcessInfoProbe.isAlive(ownerPid, startedAt: ownerStart) { return true }
        if phase == .starting && !ProcessInfoProbe.isAlive(creatorPid, startedAt: creatorStart) { return true }
        return false
    }
}

public enum LabState {
    /// Where lab records live; survives the CLI, cleared at boot (tmpfs).
    public static var root: String {
        ProcessInfo.processInfo.environment["MPTRACEBOX_STATE_DIR"] ?? "/run/mptracebox/labs"
    }

    public static func directory(of name: String) -> String { "\(root)/\(name)" }

    static func recordPath(_ name: String) -> String { "\(directory(of: name))/lab.json" }

    /// Reserves the lab name atomically (mkdir); false when another lab holds it.
    static func reserve(_ name: String) throws -> Bool {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return mkdir(directory(of: name), 0o755) == 0
    }

    static func write(_ record: LabRecord) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.dateEncodingStrategy = .iso8601
        let path = recordPath(record.name)
        try enc.encode(record).write(to: URL(fileURLWithPath: path + ".tmp"))
        guard rename(path + ".tmp", path) == 0 else {
            throw LabError.stateCorrupt(path, String(cString: strerror(errno)))
        }
    }

    public static func read(_ name: String) throws -> LabRecord {
        let path = recordPath(name)
        guard let data = FileManager.default.contents(atPath: path) else { throw LabError.labNotFound(name) }
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601
        do { return try dec.decode(LabRecord.self, from: data) } catch {
            throw LabError.stateCorrupt(path, "\(error)")
        }
    }

    /// Names of every lab directory, including ones whose record was never written.
    public static func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }
}
