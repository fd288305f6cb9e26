import ArgumentParser
import NetIO
import Trace

/// Errors the commands report, each with a documented exit status (see `mptracebox --help`).
enum CLIError: Error, CustomStringConvertible {
    case usage(String)
    case target(String)
    case privileges(String)
    case runtime(String)

    var description: String {
        switch self {
        case .usage(let m), .target(let m), .privileges(let m), .runtime(let m): return m
        }
    }

    /// 64 usage (EX_USAGE), 68 target cannot be resolved or routed (EX_NOHOST), 77 missing
    /// capability (EX_NOPERM), 1 any other failure.
    var exitCode: ExitCode {
        switch self {
        case .usage: return ExitCode(64)
        case .target: return ExitCode(68)
        case .privileges: return ExitCode(77)
        case .runtime: return ExitCode(1)
        }
    }

    /// Maps any error from the layers below to a CLIError.
    static func from(_ error: Error) -> CLIError {
        if let e = error as? CLIError { return e }
        if let e = error as? PrivilegeError { return .privileges(e.description) }
        if case .probe(let m)? = error as? TraceError { return .usage("probe: \(m)") }
        if case .invalidConfiguration(let m)? = error as? TraceError { return .usage(m) }
        if let e = error as? NetIOError {
            return e.message.contains("CAP_NET") ? .privileges(e.message) : .runtime(e.message)
        }
        return .runtime("\(error)")
    }
}

/// Runs a command body, printing errors as `mptracebox: ...` and exiting with their status.
func runReportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as ExitCode { throw e } catch let e as ValidationError { throw e } catch {
        let cli = CLIError.from(error)
        printError("mptracebox: \(cli.description)")
        throw cli.exitCode
    }
}

func printError(_ s: String) {
    var stderr = StandardError()
    print(s, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        #if canImport(Glibc)
        fputs(string, Glibc.stderr)
        #endif
    }
}
#if canImport(Glibc)
import Glibc
#endif
