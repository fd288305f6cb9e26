import Foundation
import Wire
import NetIO
import Session
import Suite

/// The session engine behind a suite's `connect:` checks: one crafted MPTCP session per probe,
/// with the kernel-RST guard, classified as `mptracebox connect` would.
struct LiveSessionChecker: SessionChecker {
    let interface: String?

    func run(_ request: SessionRequest) throws -> SessionOutcome {
        // Sessions use three local ports (initial, join, retry): take them from a range the suite's
        // trace probes do not use, so parallel probes cannot collide.
        let sport = UInt16.random(in: 61000...65000)
        var config = SessionConfiguration(target: request.target, source: request.source, sourcePort: sport,
                                          destinationPort: request.port)
        config.join = false
        config.addAddress = false
        for (key, value) in request.settings {
            switch key {
            case "join": config.join = try bool(key, value)
            case "add-addr": config.addAddress = try bool(key, value)
            case "checksum": config.checksum = try bool(key, value)
            case "bytes":
                guard let n = Int(value), (0...1_000_000).contains(n) else { throw SessionSettingError(key, value) }
                config.payload = SessionConfiguration.defaultPayload(n)
            case "timeout":
                guard let t = Double(value), t > 0, t <= 60 else { throw SessionSettingError(key, value) }
                config.timeout = t
            case "version":
                guard let v = VersionChoice(rawValue: value) else { throw SessionSettingError(key, value) }
                config.version = v
            case "mode":
                guard value == "crafted" else { throw SessionSettingError(key, value, "suites run crafted sessions only") }
            default:
                throw SessionSettingError(key, value, "unknown connect setting (known: join, add-addr, checksum, bytes, timeout, version, mode)")
            }
        }
        try config.validate()
        let guardTable = try RSTGuard(ports: config.localPorts)
        defer { guardTable.remove() }
        let network = try LiveNetwork(options: LiveNetwork.Options(filter: SessionEngine.captureFilter(config), mark: RSTGuard.mark,
                                                                   interface: interface))
        defer { network.close() }
        let record = try SessionEngine(configuration: config, network: network).run()
        let v = SessionClassifier.classify(record)
        return SessionOutcome(verdict: v.session.id, joins: v.join.map { [$0.id] } ?? [], addAddress: v.addAddress?.id,
                              evidence: v.session.evidence.map(\.why), document: SessionReport.json(record, v))
    }

    func bool(_ key: String, _ value: String) throws -> Bool {
        switch value.lowercased() {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: throw SessionSettingError(key, value)
        }
    }
}

struct SessionSettingError: Error, CustomStringConvertible {
    let description: String
    init(_ key: String, _ value: String, _ why: String = "not a valid value") {
        description = "connect: \(key): \(value): \(why)"
    }
}
