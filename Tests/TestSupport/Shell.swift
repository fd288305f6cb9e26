import Foundation

/// The result of running a command in tests.
public struct CommandResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

public enum TestShell {
    /// Runs a command (argv[0] looked up on PATH) and collects its output.
    @discardableResult
    public static func run(_ argv: [String], input: String? = nil) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        if let input {
            let inPipe = Pipe()
            process.standardInput = inPipe
            try process.run()
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try inPipe.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        // Read both pipes before waiting, so a chatty child cannot block on a full pipe.
        // (The reader's result crosses threads in a box; group.wait() orders it before the read.)
        final class Sink: @unchecked Sendable { var data = Data() }
        let outSink = Sink()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { outSink.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let outData = outSink.data
        process.waitUntilExit()
        return CommandResult(status: process.terminationStatus,
                             stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs a command and throws when it exits non-zero.
    @discardableResult
    public static func check(_ argv: [String], input: String? = nil) throws -> String {
        let r = try run(argv, input: input)
        guard r.status == 0 else {
            throw ShellError(argv: argv, status: r.status, stderr: r.stderr)
        }
        return r.stdout
    }
}

public struct ShellError: Error, CustomStringConvertible {
    public let argv: [String]
    public let status: Int32
    public let stderr: String
    public var description: String { "\(argv.joined(separator: " ")) exited \(status): \(stderr)" }
}
