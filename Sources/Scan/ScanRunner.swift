import Foundation
import Wire
import Report
import PacketIO

/// Progress of a run, for the progress bar.
public struct ScanProgress: Sendable {
    public var done: Int
    public var total: Int?
    public var inFlight: Int
    public var elapsed: Double
    public var packetsSent: Int
}

/// How a run ended and what it counted.
public struct ScanSummary: Sendable {
    public enum Outcome: String, Sendable {
        /// Every target of the list got a record.
        case done
        /// The run ended but some targets could not be probed (bad lines, unresolved names, errors).
        case partial
        /// Stopped by a signal: resume with --resume.
        case interrupted
    }

    public var run: Int64
    public var outcome: Outcome = .done
    public var recorded = 0
    public var alreadyRecorded = 0
    public var ok = 0
    public var unresolved = 0
    public var errors = 0
    public var badLines = 0
    public var blocked = 0
    public var duplicates = 0
    public var filtered = 0
    public var packetsSent = 0
    public var packetsReceived = 0
    public var sendErrors = 0
    public var maxReplyLag = 0.0
    /// Packets per second between the first and the last send.
    public var sendRate = 0.0
    public var seconds = 0.0

    public var json: JSON {
        .object([
            ("schema", "mptracebox.scan-summary/1"), ("run", .int(run)), ("outcome", .string(outcome.rawValue)),
            ("recorded", .number(recorded)), ("already_recorded", .number(alreadyRecorded)), ("ok", .number(ok)),
            ("unresolved", .number(unresolved)), ("errors", .number(errors)), ("bad_lines", .number(badLines)),
            ("blocked", .number(blocked)), ("duplicates", .number(duplicates)), ("filtered", .number(filtered)),
            ("packets_sent", .number(packetsSent)), ("packets_received", .number(packetsReceived)),
            ("send_errors", .number(sendErrors)), ("max_reply_lag_ms", .double(maxReplyLag * 1000)), ("duration_s", .double(seconds)),
            ("packets_per_s", .double(seconds > 0 ? Double(packetsSent) / seconds : 0)), ("send_rate", .double(sendRate)),
        ])
    }
}

/// One scan run: the feed into the engine, each outcome into the store (one transaction per
/// batch) and then the JSON Lines output, so what is written is always committed first.
public final class ScanRunner {
    public struct Settings {
        public var engine: ScanEngine.Options
        /// Records per transaction, and the longest a record waits for its commit.
        public var batchSize: Int = 256
        public var batchInterval: Double = 0.25
        public init(engine: ScanEngine.Options) { self.engine = engine }
    }

    let settings: Settings
    let engine: ScanEngine
    let feed: TargetFeed
    let store: ScanStore?
    let output: JSONLinesWriter?
    let runID: Int64
    let sourceAddress: (IPAddress) throws -> IPAddress
    let log: (String) -> Void

    private var pending: [ScanRecord] = []
    private var lastFlush = 0.0
    private var summary: ScanSummary
    private var fatal: Error?

    public init(settings: Settings, network: PacketNetwork, checks: [ScanCheck], feed: TargetFeed, store: ScanStore?,
                output: JSONLinesWriter?, runID: Int64, sourceAddress: @escaping (IPAddress) throws -> IPAddress,
                log: @escaping (String) -> Void) throws {
        self.settings = settings
        engine = try ScanEngine(network: network, checks: checks, options: settings.engine)
        self.feed = feed
        self.store = store
        self.output = output
        self.runID = runID
        self.sourceAddress = sourceAddress
        self.log = log
        summary = ScanSummary(run: runID)
    }

    /// Runs to the end of the list or until `shouldStop`; `progress` is called a few times a second.
    public func run(total: Int?, shouldStop: @escaping () -> Bool, progress: ((ScanProgress) -> Void)?) throws -> ScanSummary {
        let clock = engine.network
        let start = clock.now()
        lastFlush = start
        var lastProgress = 0.0
        var stopped = false
        feed.start()
        try engine.run(source: pull, shouldStop: { [self] in
            let now = clock.now()
            if now - lastFlush >= settings.batchInterval {
                do { try flush(now: now) } catch { fatal = error }
            }
            if let p = progress, now - lastProgress >= 0.2 {
                lastProgress = now
                let c = engine.counters
                p(ScanProgress(done: summary.recorded + pending.count + summary.alreadyRecorded, total: total,
                               inFlight: c.started - c.completed, elapsed: now - start, packetsSent: c.packetsSent))
            }
            if fatal != nil { return true }
            if shouldStop() { stopped = true; return true }
            return false
        }, complete: { [self] outcome in
            pending.append(ScanRecord(run: runID, outcome: outcome))
            if pending.count >= settings.batchSize { try flush(now: clock.now()) }
        })
        if let e = fatal { throw e }
        try flush(now: clock.now())
        let c = engine.counters
        summary.packetsSent = c.packetsSent
        summary.packetsReceived = c.packetsReceived
        summary.sendErrors = c.sendErrors
        summary.maxReplyLag = c.maxReplyLag
        summary.sendRate = c.sendRate
        summary.seconds = clock.now() - start
        if stopped {
            summary.outcome = .interrupted
        } else if summary.badLines + summary.unresolved + summary.errors > 0 {
            summary.outcome = .partial
        }
        return summary
    }

    /// The engine's source: feed items turned into targets; the rest counted or recorded here.
    func pull() -> ScanPull {
        while let item = feed.poll() {
            switch item {
            case .target(let t):
                do {
                    if let s = store, try s.isRecorded(run: runID, target: t.address.description, port: t.port) {
                        summary.alreadyRecorded += 1
                        continue
                    }
                    let src: IPAddress
                    do { src = try sourceAddress(t.address) } catch {
                        let now = engine.network.now()
                        pending.append(ScanRecord(run: runID, target: t.address.description, port: t.port, name: t.name, tag: t.tag,
                                                  origin: t.origin, status: .error, started: now, finished: now, error: "\(error)"))
                        continue
                    }
                    return .target(t, source: src)
                } catch {
                    fatal = error
                    return .exhausted
                }
            case .badLine(let e):
                summary.badLines += 1
                log("mptracebox: \(e)")
            case .unresolved(let name, let port, let tag, let origin, let message):
                do {
                    if let s = store, try s.isRecorded(run: runID, target: name, port: port) {
                        summary.alreadyRecorded += 1
                        continue
                    }
                } catch { fatal = error; return .exhausted }
                let now = engine.network.now()
                pending.append(ScanRecord(run: runID, target: name, port: port, name: name, tag: tag, origin: origin,
                                          status: .unresolved, started: now, finished: now, error: message))
            case .blocked:
                summary.blocked += 1
            case .duplicate:
                summary.duplicates += 1
            case .filtered:
                summary.filtered += 1
            case .end:
                return .exhausted
            }
        }
        return .pending
    }

    func flush(now: Double) throws {
        lastFlush = now
        guard !pending.isEmpty else { return }
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        let lines = batch.map { $0.json.rendered() }
        let kept = try store?.commit(batch, lines: lines) ?? Array(batch.indices)
        let written = kept.map { batch[$0] }
        summary.duplicates += batch.count - written.count
        for r in written {
            summary.recorded += 1
            switch r.status {
            case .ok: summary.ok += 1
            case .unresolved: summary.unresolved += 1
            case .error: summary.errors += 1
            }
        }
        try output?.write(kept.map { lines[$0] })
    }
}
