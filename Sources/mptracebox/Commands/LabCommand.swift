import ArgumentParser
import Lab

/// `mptracebox lab`: the network-namespace testbed.
struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "A network-namespace testbed of real routers, middleboxes and MPTCP servers.",
        discussion: """
            A lab is a chain client -> hops -> server of network namespaces joined by veth links \
            (optionally a second path for a dual-homed client). Hops are Linux routers that may \
            carry middlebox behaviours. Needs root. See docs/lab.md for the spec grammar.
            """,
        subcommands: [LabUp.self, LabDown.self, LabList.self, LabStatus.self, LabExec.self, LabElementCommand.self]
    )
}

/// Turns lab errors into a clean message and exit status instead of a stack of Swift types.
func labFailure(_ error: Error) -> Error {
    switch error {
    case let e as LabSpecError: return ValidationError(e.description)
    case let e as LabError:
        FileHandleStderr.write("error: \(e.description)\n")
        return ExitCode(1)
    default: return error
    }
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var s = s
        s.withUTF8 { buf in _ = fwrite(buf.baseAddress, 1, buf.count, stderr) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
