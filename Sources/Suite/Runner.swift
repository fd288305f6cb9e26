import Foundation
import Wire
import PacketIO
import Trace

/// What the runner needs from the outside world. The CLI gives it the live network (libnet,
/// libpcap, the resolver); tests give it simulated paths.
public protocol SuiteEnvironment: AnyObject, Sendable {
    /// The address of a target as written (a name or an address).
    func resolve(_ target: String) throws -> IPAddress
    /// The source address to use toward `target`.
    func source(toward target: IPAddress) throws -> IPAddress
    /// A fresh network for one trace (its capture filter follows from the configuration).
    func traceNetwork(for configuration: TraceConfiguration) throws -> PacketNetwork
    /// The session engine, when this build has one.
    var sessions: SessionChecker? { get }
}

/// Run-wide settings; a probe's `trace:` settings override the trace defaults.
public struct RunOptions: Sendable {
    /// Packets per second across every probe running at once.
    public var rate: Double = 100
    /// Probes run at once (each is its own flow, so they do not disturb one another).
    public var jobs: Int = 4
    public var timeout: Double = 1.0
    public var retries: Int = 1
    public var minTTL: Int = 1
    public var maxTTL: Int = 30
    /// Probe i uses source port `sourcePortBase + 2i` (its blackhole control uses the next one).
    public var sourcePortBase: UInt16 = 40000
    /// Random sequence/IP-ID bases and TSval per probe (the CLI); fixed values keep tests deterministic.
    public var randomIdentity: Bool = false

    public init() {}

    public func validate() throws {
        guard rate > 0, rate <= 1_000_000 else { throw SuiteError("--rate must be in (0, 1000000] packets/s", at: nil) }
        guard (1...64).contains(jobs) else { throw SuiteError("--jobs must be 1 to 64", at: nil) }
        guard timeout > 0, timeout <= 60 else { throw SuiteError("--timeout must be in (0, 60] seconds", at: nil) }
        guard (0...10).contains(retries) else { throw SuiteError("--retries must be 0 to 10", at: nil) }
        guard (1...255).contains(minTTL), (1...255).contains(maxTTL), minTTL <= maxTTL else {
            throw SuiteError("--min-ttl and --max-ttl must lie within 1...255 with min ≤ max", at: nil)
        }
    }
}

public struct ProbeResult: Sendable {
    public var probe: BoundProbe
    public var address: IPAddress?
    public var trace: TraceResult?
    public var traceError: String?
    public var session: SessionOutcome?
    public var sessionError: String?
    public var expectations: [ExpectationResult]
    public var durationSeconds: Double

    /// The worst outcome of its expectations (pass when it has none).
    public var outcome: Outcome { expectations.map(\.outcome).max() ?? (traceError != nil ? .error : .pass) }
}

public struct SuiteResult: Sendable {
    public var suite: SuiteSpec
    public var probes: [ProbeResult]
    public var durationSeconds: Double { probes.map(\.durationSeconds).reduce(0, +) }
    public var outcome: Outcome { probes.map(\.outcome).max() ?? .pass }
}

public struct RunResult: Sendable {
    public var suites: [SuiteResult]
    public var durationSeconds: Double
    /// True when a fail-severity expectation failed or could not be evaluated.
    public var failed: Bool { suites.contains { $0.probes.contains { $0.expectations.contains { $0.outcome.failsRun } || $0.traceError != nil && $0.expectations.isEmpty } } }

    public func count(_ o: Outcome) -> Int { suites.flatMap(\.probes).flatMap(\.expectations).filter { $0.outcome == o }.count }
}

/// Runs bound probes: traces through `TraceEngine`, sessions through the `SessionChecker`, then
/// evaluates the expectations.
public final class SuiteRunner: @unchecked Sendable {
    let environment: SuiteEnvironment
    let options: RunOptions
    private let lock = NSLock()
    private var resolved: [String: Result<IPAddress, SuiteError>] = [:]

    public init(environment: SuiteEnvironment, options: RunOptions) {
        self.environment = environment
        self.options = options
    }

    /// Runs every suite's probes, `options.jobs` at a time, and returns results in file order.
    public func run(_ suites: [(SuiteSpec, [BoundProbe])]) -> RunResult {
        let start = Date()
        let jobs = suites.enumerated().flatMap { (s, pair) in pair.1.enumerated().map { (s, $0.offset, $0.element) } }
        let box = WorkQueue(count: jobs.count)
        let workers = max(1, min(options.jobs, jobs.count))
        // The rate is shared: each of the probes running at once gets its part.
        let perProbeRate = options.rate / Double(workers)
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            Thread.detachNewThread { [self] in
                defer { group.leave() }
                while let i = box.take() {
                    box.store(runProbe(jobs[i].2, index: i, rate: perProbeRate), at: i)
                }
            }
        }
        group.wait()
        let results = box.results
        var out: [SuiteResult] = suites.map { SuiteResult(suite: $0.0, probes: []) }
        for (i, job) in jobs.enumerated() {
            if let r = results[i] { out[job.0].probes.append(r) }
        }
        return RunResult(suites: out, durationSeconds: Date().timeIntervalSince(start))
    }

    func address(_ target: String) throws -> IPAddress {
        lock.lock()
        if let r = resolved[target] { lock.unlock(); return try r.get() }
        lock.unlock()
        let r: Result<IPAddress, SuiteError>
        do { r = .success(try environment.resolve(target)) } catch let e as SuiteError { r = .failure(e) } catch {
            r = .failure(SuiteError("cannot resolve target \(target): \(error)", at: nil))
        }
        lock.lock()
        resolved[target] = r
        lock.unlock()
        return try r.get()
    }

    /// Runs one probe; never throws: failures become errors in the result.
    public func runProbe(_ probe: BoundProbe, index: Int, rate: Double) -> ProbeResult {
        var result = ProbeResult(probe: probe, expectations: [], durationSeconds: 0)
        let sport = Self.sourcePort(base: options.sourcePortBase, index: index)
        let clock = Date()
        do {
            let target = try address(probe.target)
            result.address = target
            let source = try environment.source(toward: target)
            if let t = probe.trace, let expression = probe.expression {
                do {
                    var c = TraceConfiguration(target: target, source: source, sourcePort: sport, destinationPort: probe.port,
                                               probe: expression)
                    c.minTTL = t.minTTL ?? options.minTTL
                    c.maxTTL = t.maxTTL ?? options.maxTTL
                    c.timeout = t.timeout ?? options.timeout
                    c.retries = t.retries ?? options.retries
                    c.sequential = t.sequential ?? false
                    c.checkProxy = t.proxyCheck ?? true
                    c.checkBlackhole = t.blackholeCheck ?? true
                    c.rate = rate
                    if options.randomIdentity {
                        c.sequenceBase = UInt32.random(in: 0...UInt32.max) & 0xffff_0000
                        c.identificationBase = UInt16.random(in: 0...UInt16.max) & 0xff00
                        c.timestampValue = UInt32.random(in: 1...UInt32.max)
                    }
                    try c.validate()
                    let network = try environment.traceNetwork(for: c)
                    result.trace = try TraceEngine(configuration: c, network: network).run()
                } catch {
                    result.traceError = "trace failed: \(error)"
                }
            }
            if let settings = probe.connect {
                if let checker = environment.sessions {
                    do {
                        result.session = try checker.run(SessionRequest(target: target, source: source, port: probe.port,
                                                                        sourcePort: sport, settings: settings))
                    } catch {
                        result.sessionError = "connect failed: \(error)"
                    }
                } else {
                    result.sessionError = SessionAvailability.unavailable
                }
            }
        } catch let e as SuiteError {
            result.traceError = e.message
            result.sessionError = e.message
        } catch {
            result.traceError = "\(error)"
            result.sessionError = "\(error)"
        }
        result.expectations = probe.spec.expectations.map {
            Evaluator.evaluate($0, variables: probe.variables, trace: result.trace, traceError: result.traceError,
                               session: result.session, sessionError: result.sessionError)
        }
        result.durationSeconds = result.trace?.durationSeconds ?? Date().timeIntervalSince(clock)
        return result
    }

    /// Source ports stay in the ephemeral range whatever the base and count.
    static func sourcePort(base: UInt16, index: Int) -> UInt16 {
        let span = 60999 - 32768 + 1
        let b = Int(base) >= 32768 && Int(base) <= 60999 ? Int(base) - 32768 : Int(base) % span
        return UInt16(32768 + (b + 2 * index) % (span - 1))
    }
}

/// The runner's shared state: the next job to take and the results, behind one lock.
final class WorkQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private let count: Int
    private var stored: [ProbeResult?]

    init(count: Int) {
        self.count = count
        stored = Array(repeating: nil, count: count)
    }

    func take() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < count else { return nil }
        next += 1
        return next - 1
    }

    func store(_ r: ProbeResult, at i: Int) {
        lock.lock()
        stored[i] = r
        lock.unlock()
    }

    var results: [ProbeResult?] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
