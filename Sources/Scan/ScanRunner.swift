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
/// Records are rendered, committed and written on a writer thread, so the dispatcher (and the
/// rate) never waits for JSON or the disk.
public final class ScanRunner {
    public struct Settings {
        public var engine: ScanEngine.Options
        /// Records per transaction, and the longest a record waits for its commit.
        public var batchSize: Int = 256
        public var batchInterval: Double = 0.25
        public init(engine: ScanEngine.Options) { self.engine = engine }
    }

    let settings: Settings
    public let engine: ScanEngine
    let feed: TargetFeed
    let store: ScanStore?
    let output: JSONLinesWriter?
    let runID: Int64
    let sourceAddress: (IPAddress) throws -> IPAddress
    let log: (String) -> Void

    enum Pending {
        case outcome(ScanOutcome)
        case record(ScanRecord)
    }

    private var pending: [Pending] = []
    private var lastFlush = 0.0
    private var summary: ScanSummary
    private var fatal: Error?
    // Shared with the writer thread (under `lock`).
    private let lock = NSLock()
    private var written = ScanSummary(run: 0)
    private var writerError: Error?
    private let batches = BoundedQueue<[Pending]?>(capacity: 64)
    private let writerDone = DispatchSemaphore(value: 0)

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
        let writer = Thread { [self] in writeLoop() }
        writer.start()
        var writerStopped = false
        func stopWriter() {
            guard !writerStopped else { return }
            writerStopped = true
            batches.push(nil)
            writerDone.wait()
        }
        defer { stopWriter() }
        feed.start()
        try engine.run(source: pull, shouldStop: { [self] in
            let now = clock.now()
            if now - lastFlush >= settings.batchInterval { flush(now: now) }
            lock.lock()
            if fatal == nil, let e = writerError { fatal = e }
            let recorded = written.recorded
            lock.unlock()
            if let p = progress, now - lastProgress >= 0.2 {
                lastProgress = now
                let c = engine.counters
                p(ScanProgress(done: recorded + pending.count + summary.alreadyRecorded, total: total,
                               inFlight: c.started - c.completed, elapsed: now - start, packetsSent: c.packetsSent))
            }
            if fatal != nil { return true }
            if shouldStop() { stopped = true; return true }
            return false
        }, complete: { [self] outcome in
            pending.append(.outcome(outcome))
            if pending.count >= settings.batchSize { flush(now: clock.now()) }
        })
        if let e = fatal { throw e }
        flush(now: clock.now())
        stopWriter()
        lock.lock()
        let w = written, werr = writerError
        lock.unlock()
        if let e = werr { throw e }
        summary.recorded = w.recorded
        summary.ok = w.ok
        summary.unresolved = w.unresolved
        summary.errors = w.errors
        summary.duplicates += w.duplicates
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
                        pending.append(.record(ScanRecord(run: runID, target: t.address.description, port: t.port, name: t.name, tag: t.tag,
                                                          origin: t.origin, status: .error, started: now, finished: now, error: "\(error)")))
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
                pending.append(.record(ScanRecord(run: runID, target: name, port: port, name: name, tag: tag, origin: origin,
                                                  status: .unresolved, started: now, finished: now, error: message)))
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

    /// Hands the pending records to the writer (which commits them, then writes their lines).
    func flush(now: Double) {
        lastFlush = now
        guard !pending.isEmpty else { return }
        batches.push(pending)
        pending.removeAll(keepingCapacity: true)
    }

    /// The writer thread: records rendered once, committed in one transaction per batch, then
    /// written; after an error it keeps draining (the dispatcher stops at its next turn).
    func writeLoop() {
        defer { writerDone.signal() }
        while true {
            guard let next = batches.pop(timeout: 3600) else { continue }
            guard let batch = next else { return }
            lock.lock()
            let failed = writerError != nil
            lock.unlock()
            if failed { continue }
            do {
                let records = batch.map { item -> ScanRecord in
                    switch item {
                    case .outcome(let o): return ScanRecord(run: runID, outcome: o)
                    case .record(let r): return r
                    }
                }
                let lines = records.map { $0.json.rendered() }
                let kept = try store?.commit(records, lines: lines) ?? Array(records.indices)
                try output?.write(kept.map { lines[$0] })
                lock.lock()
                written.duplicates += records.count - kept.count
                for i in kept {
                    written.recorded += 1
                    switch records[i].status {
                    case .ok: written.ok += 1
                    case .unresolved: written.unresolved += 1
                    case .error: written.errors += 1
                    }
                }
                lock.unlock()
            } catch {
                lock.lock()
                writerError = error
                lock.unlock()
            }
        }
    }
}
