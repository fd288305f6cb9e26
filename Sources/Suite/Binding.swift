import Wire
import Probe

/// A probe with its variables substituted and its expression parsed: ready to run.
public struct BoundProbe: Sendable {
    public var spec: ProbeSpec
    public var suite: String
    /// The target as written after substitution (a name or an address).
    public var target: String
    public var port: UInt16
    /// Nil for probes that only run the connect check.
    public var expression: ProbeExpression?
    public var trace: BoundTrace?
    public var connect: [String: String]?
    public var variables: Variables
}

/// Trace settings after substitution (nil: the runner's default).
public struct BoundTrace: Hashable, Sendable {
    public var minTTL: Int?
    public var maxTTL: Int?
    public var timeout: Double?
    public var retries: Int?
    public var sequential: Bool?
    public var proxyCheck: Bool?
    public var blackholeCheck: Bool?
}

extension ProbeSpec {
    /// Substitutes variables (`outer` wins over the probe's own `vars:`) and parses the probe
    /// expression. Errors point at the file: a probe-language error at its column in `send:`.
    public func bind(suite: String, outer: Variables) throws -> BoundProbe {
        let vars = Variables.builtins.overlaid(with: vars).overlaid(with: outer)
        let targetText = try target?.resolved(vars) ?? {
            guard let t = vars["target"] else {
                throw SuiteError("no target: give --target (or --var target=ADDRESS)", at: location)
            }
            return t
        }()
        let portTemplate = port ?? Template("${port}", at: location, exactColumns: false)
        let port = UInt16(try portTemplate.integer(vars, in: 1...65535, what: "port"))

        var expression: ProbeExpression?
        if !send.isEmpty {
            var text = ""
            var origins: [(Template, Int)] = []
            for (i, piece) in send.enumerated() {
                if i > 0 { text += "/"; origins.append((piece, 0)) }
                let (t, o) = try piece.resolve(vars)
                text += t
                origins += o.map { (piece, $0) }
            }
            do {
                expression = try ProbeExpression(parsing: text)
            } catch let e as ProbeError {
                let index = e.column - 1
                let loc = index >= 0 && index < origins.count
                    ? origins[index].0.location(ofCharacter: origins[index].1) : (send.last?.location ?? location)
                throw SuiteError("probe: \(e.message) (in \"\(text)\")", at: loc)
            }
        }

        var boundTrace: BoundTrace?
        if let t = trace {
            boundTrace = BoundTrace(
                minTTL: try t.minTTL?.integer(vars, in: 1...255, what: "min-ttl"),
                maxTTL: try t.maxTTL?.integer(vars, in: 1...255, what: "max-ttl"),
                timeout: try t.timeout?.number(vars, in: 0.001...60, what: "timeout"),
                retries: try t.retries?.integer(vars, in: 0...10, what: "retries"),
                sequential: t.sequential, proxyCheck: t.proxyCheck, blackholeCheck: t.blackholeCheck)
            if let a = boundTrace?.minTTL, let b = boundTrace?.maxTTL, a > b {
                throw SuiteError("min-ttl \(a) is above max-ttl \(b)", at: t.minTTL?.location ?? location)
            }
        }
        var boundConnect: [String: String]?
        if let c = connect {
            boundConnect = try c.options.mapValues { try $0.resolved(vars) }
        }
        // Expectation parameters with variables must resolve too (checked here, used when evaluating).
        for e in expectations {
            switch e.kind {
            case .optionIntact(_, .hop(let t)): _ = try t.integer(vars, in: 1...255, what: "intact hop")
            case .noFinding(_, let b?, _), .finding(_, let b?, _): _ = try b.integer(vars, in: 1...256, what: "before")
            case .mssAtLeast(let t): _ = try t.integer(vars, in: 0...65535, what: "mss min")
            default: break
            }
        }
        return BoundProbe(spec: self, suite: suite, target: targetText, port: port, expression: expression,
                          trace: boundTrace, connect: boundConnect, variables: vars)
    }
}

extension SuiteSpec {
    /// Binds every probe; `commandLine` wins over the suite's `vars:`. Collects every error.
    public func bind(commandLine: Variables) throws -> [BoundProbe] {
        let outer = vars.overlaid(with: commandLine)
        var out: [BoundProbe] = []
        var errors: [SuiteError] = []
        for p in probes {
            do { out.append(try p.bind(suite: name, outer: outer)) } catch let e as SuiteError { errors.append(e) }
        }
        if !errors.isEmpty { throw SuiteErrors(errors) }
        return out
    }
}

extension BoundProbe {
    /// Builds the probe once, as the engine would, to catch what only building shows (the
    /// 40-byte option budget, family mismatches) before anything is sent.
    public func validatePacket(target: IPAddress) throws {
        guard let e = expression else { return }
        let source: IPAddress = target.isV4 ? .v4(IPv4Address(198, 18, 0, 1)) : IPAddress("2001:db8::1")!
        do {
            _ = try e.packet(source: source, destination: target, sourcePort: 40000, destinationPort: port, sequenceNumber: 1)
        } catch let err as ProbeError {
            throw SuiteError("probe \"\(e.text)\" cannot be built: \(err.message)", at: spec.send.first?.location ?? spec.location)
        } catch let err as WireError {
            throw SuiteError("probe \"\(e.text)\" cannot be built: \(err.message)", at: spec.send.first?.location ?? spec.location)
        } catch {
            throw SuiteError("probe \"\(e.text)\" cannot be built: \(error)", at: spec.send.first?.location ?? spec.location)
        }
    }
}
