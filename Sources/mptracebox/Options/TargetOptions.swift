import ArgumentParser
import Wire
import NetIO

/// Where to probe and from where: shared by `trace` and the commands that build on it.
struct TargetOptions: ParsableArguments {
    @Flag(name: .customShort("4"), help: "Use IPv4 (resolve A records).")
    var ipv4 = false

    @Flag(name: .customShort("6"), help: "Use IPv6 (resolve AAAA records).")
    var ipv6 = false

    @Option(name: .long, help: "Destination TCP port.")
    var dport: UInt16 = 80

    @Option(name: .long, help: "Source TCP port (default: random in 32768-60999).")
    var sport: UInt16?

    @Option(name: .long, help: "Send from this interface.")
    var interface: String?

    @Option(name: .long, help: "Source address (default: the kernel's choice toward the target).")
    var source: String?

    @Argument(help: "Target name or address.")
    var target: String

    func validate() throws {
        if ipv4 && ipv6 { throw ValidationError("-4 and -6 exclude each other") }
        if let s = source, IPAddress(s) == nil { throw ValidationError("--source \(s) is not an IPv4 or IPv6 address") }
        if dport == 0 { throw ValidationError("--dport 0 is not a usable port") }
        if sport == 0 { throw ValidationError("--sport 0 is not a usable port") }
    }

    var family: FamilyPreference { ipv4 ? .v4 : ipv6 ? .v6 : .any }

    /// The target address and the source address to use toward it.
    func resolve() throws -> (target: IPAddress, source: IPAddress) {
        let addresses: [IPAddress]
        do { addresses = try Resolver.resolve(target, family: family) } catch {
            throw CLIError.target("\(error)")
        }
        guard let t = addresses.first else { throw CLIError.target("cannot resolve \(target)") }
        if let s = source.flatMap(IPAddress.init) {
            guard s.isV4 == t.isV4 else { throw CLIError.usage("--source \(s) and target \(t) are of different families") }
            return (t, s)
        }
        do { return (t, try Resolver.sourceAddress(toward: t)) } catch { throw CLIError.target("\(error)") }
    }

    var sourcePort: UInt16 { sport ?? UInt16.random(in: 32768...60999) }
}
