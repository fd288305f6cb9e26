// The one place where the lab runs external commands (ip, nft, iptables, sysctl, ethtool) and
// turns failures into typed errors that show the command and its stderr.

import Foundation

/// Why a lab operation failed.
public enum LabError: Error, CustomStringConvertible {
    case commandFailed(command: String, status: Int32, stderr: String)
    case toolMissing(String)
    case notRoot
    case labExists(String)
    case labNotFound(String)
    case unknownNode(String, lab: String, known: [String])
    case elementUnavailable([String])
    case binaryNotFound(String)
    case daemonFailed(node: String, what: String, log: String)
    case stateCorrupt(String, String)

    public var description: String {
        switch self {
        case .commandFailed(let cmd, let status, let stderr):
            let err = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            return "command failed (exit \(status)): \(cmd)" + (err.isEmpty ? "" : "\n\(err)")
        case .toolMissing(let t): return "\(t) is not installed (run `make deps` or scripts/install-deps.sh)"
        case .notRoot: return "the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces"
        case .labExists(let n): return "a lab named '\(n)' is already up; take it down with `mptracebox lab down \(n)` or pick another --name"
        case .labNotFound(let n): return "no lab named '\(n)' is up (see `mptracebox lab list`)"
        case .unknownNode(let n, let lab, let known):
            return "lab '\(lab)' has no node '\(n)'; nodes: \(known.joined(separator: ", "))"
        case .elementUnavailable(let bs):
            return "hop behaviour(s) \(bs.joined(separator: ", ")) need the userspace NFQUEUE element (`mptracebox lab _element`), which is not yet available in this build"
        case .binaryNotFound(let why): return "cannot find the mptracebox binary: \(why) (set MPTRACEBOX_BIN)"
        case .daemonFailed(let node, let what, let log):
            return "\(what) in \(node) did not start" + (log.isEmpty ? "" : ":\n\(log)")
        case .stateCorrupt(let path, let why): return "lab state \(path) is unreadable: \(why)"
        }
    }
}

/// Output of a finished command.
public struct CommandOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

public enum Runner {
    static let searchPath = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"]

    /// Resolves a program name to a path (PATH first, then the sbin directories).
    public static func which(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let env = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").map(String.init) ?? []
        for dir in env + searchPath where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    /// Runs a command to completion and returns what it printed.
    ///
    /// posix_spawn + waitpid on the child's own pid, not Foundation's Process: Process learns of
    /// a child's exit from SIGCHLD and was seen to miss it (a zombie `sh` and a hung `lab up`)
    /// when the command started a detached daemon.
    public static func run(_ argv: [String], input: String? = nil) throws -> CommandOutput {
        guard let exe = which(argv[0]) else { throw LabError.toolMissing(argv[0]) }
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1], inPipe: [Int32] = [-1, -1]
        func cloexecPipe(_ fds: inout [Int32]) -> Bool {
            guard pipe(&fds) == 0 else { return false }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return true
        }
        guard cloexecPipe(&outPipe), cloexecPipe(&errPipe), cloexecPipe(&inPipe) else {
            throw LabError.commandFailed(command: argv.joined(separator: " "), status: -1, stderr: "pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with default signal dispositions, whatever this process ignores.
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, &attributes, cArgs, environ)
        close(inPipe[0]); close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else {
            close(inPipe[1]); close(outPipe[0]); close(errPipe[0])
            throw LabError.commandFailed(command: argv.joined(separator: " "), status: -1, stderr: "spawn: \(String(cString: strerror(rc)))")
        }
        // Feed stdin from another thread and drain both outputs, so no pipe can fill up and block.
        let group = DispatchGroup()
        let inputBytes = Array((input ?? "").utf8)
        let writeEnd = inPipe[1]
        group.enter()
        DispatchQueue.global().async {
            var offset = 0
            while offset < inputBytes.count {
                let n = inputBytes[offset...].withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
            close(writeEnd)
            group.leave()
        }
        let outData = DataBox()
        let outFD = outPipe[0]
        group.enter()
        DispatchQueue.global().async {
            outData.data = readAll(outFD)
            group.leave()
        }
        let errData = readAll(errPipe[0])
        group.wait()
        close(outPipe[0]); close(errPipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS, spelled out (the macros are not imported).
        let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return CommandOutput(status: exitStatus,
                             stdout: String(decoding: outData.data, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }

    static func readAll(_ fd: Int32) -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        return data
    }

    /// Runs a command and throws `LabError.commandFailed` when it exits non-zero.
    @discardableResult
    public static func check(_ argv: [String], input: String? = nil) throws -> String {
        let r = try run(argv, input: input)
        guard r.status == 0 else {
            throw LabError.commandFailed(command: argv.joined(separator: " "), status: r.status, stderr: r.stderr)
        }
        return r.stdout
    }

    /// Runs a `sh -e -x` script; on failure the error names the command that failed
    /// (the last `+` trace line) and keeps the rest of stderr.
    public static func script(_ text: String, in namespace: String? = nil) throws {
        let argv = (namespace.map { ["ip", "netns", "exec", $0] } ?? []) + ["sh", "-e", "-x", "-c", text]
        let r = try run(argv)
        guard r.status == 0 else {
            let lines = r.stderr.split(separator: "\n").map(String.init)
            let failed = lines.last { $0.hasPrefix("+ ") }.map { String($0.dropFirst(2)) } ?? "sh script"
            let errors = lines.filter { !$0.hasPrefix("+ ") }.joined(separator: "\n")
            throw LabError.commandFailed(command: (namespace.map { "[\($0)] " } ?? "") + failed,
                                         status: r.status, stderr: errors)
        }
    }

    /// Starts a detached process (own session, stdin /dev/null, stdout and stderr appended to
    /// `log`, no other inherited descriptor) and returns its pid without waiting for it.
    public static func spawnDetached(_ argv: [String], log: String) throws -> Int32 {
        guard let exe = which(argv[0]) else { throw LabError.toolMissing(argv[0]) }
        var actions = posix_spawn_file_actions_t()
        var attr = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attr)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attr)
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Foundation leaves pipe descriptors open in children; a daemon holding one would
        // keep another command's output pipe open forever.
        // (closefrom is not visible to Swift: close what /proc/self/fd lists now.)
        let open = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }
        for fd in open where fd > 2 && fcntl(fd, F_GETFD) >= 0 && fcntl(fd, F_GETFD) & FD_CLOEXEC == 0 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        posix_spawnattr_setflags(&attr, 0x80)  // POSIX_SPAWN_SETSID (glibc, not imported)
        var pid: pid_t = 0
        let cargs = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        let rc = posix_spawn(&pid, exe, &actions, &attr, cargs, environ)
        guard rc == 0 else {
            throw LabError.commandFailed(command: argv.joined(separator: " "), status: rc,
                                         stderr: String(cString: strerror(rc)))
        }
        return pid
    }

    /// Runs `work` for every element concurrently and rethrows the first error.
    static func concurrently<T: Sendable>(_ items: [T], _ work: @Sendable (T) throws -> Void) throws {
        let errors = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: items.count) { i in
            do { try work(items[i]) } catch { errors.record(error) }
        }
        if let e = errors.first { throw e }
    }
}

/// Bytes read on another thread; the DispatchGroup orders the accesses.
final class DataBox: @unchecked Sendable { var data = Data() }

/// Collects the first error of concurrent work.
final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?
    func record(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
    var first: Error? { lock.lock(); defer { lock.unlock() }; return error }
}

/// Process liveness and identity, for finding labs whose owner died.
enum ProcessInfoProbe {
    /// The start time of a process (clock ticks since boot), nil when it does not exist.
    static func startTime(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Fields after the command name start at field 3; starttime is field 22.
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    /// True while the process exists and is not a zombie (init here may reap late).
    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != "Z" && state != "X"
    }

    static func isAlive(_ pid: Int32, startedAt start: UInt64?) -> Bool {
        guard isRunning(pid) else { return false }
        guard let now = startTime(of: pid) else { return false }
        return start == nil || start == now
    }
}
