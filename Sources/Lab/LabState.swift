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

    /// A process the lab started, as `<dir>/processes` records it: one `PID STARTTIME` line each
    /// (STARTTIME from /proc/PID/stat), appended as soon as it is spawned.
    struct Process: Hashable, Sendable {
        var pid: Int32
        var start: UInt64

        /// True while that process, and not a later one with the same pid, is running.
        var isAlive: Bool { ProcessInfoProbe.isAlive(pid, startedAt: start) }
    }

    static func processesPath(_ name: String) -> String { "\(directory(of: name))/processes" }

    /// Records a process the lab started. `down` kills it when alive even if its namespace is
    /// gone: a process in a deleted namespace (its `lab up` SIGKILLed mid-way, the namespace
    /// deleted by hand) is invisible to `ip netns pids`.
    static func recordProcess(_ name: String, _ p: Process) throws {
        let path = processesPath(name)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LabError.stateCorrupt(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        // One short write with O_APPEND: lines of concurrent writers never interleave.
        let line = Array("\(p.pid) \(p.start)\n".utf8)
        guard line.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw LabError.stateCorrupt(path, String(cString: strerror(errno)))
        }
    }

    /// The processes a lab recorded; a torn or foreign line is skipped.
    static func processes(_ name: String) -> [Process] {
        guard let text = try? String(contentsOfFile: processesPath(name), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 2, let pid = Int32(f[0]), pid > 1, let start = UInt64(f[1]) else { return nil }
            return Process(pid: pid, start: start)
        }
    }

    /// Names of every lab directory, including ones whose record was never written.
    public static func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }
}
