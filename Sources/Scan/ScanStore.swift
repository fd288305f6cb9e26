import Report

/// One target's result in a run: the JSON Lines record and the columns the store indexes.
public struct ScanRecord: Sendable {
    public static let schema = "mptracebox.scan/1"

    public enum Status: String, Sendable {
        /// Every check ran.
        case ok
        /// The name did not resolve (or not in time).
        case unresolved
        /// A check could not run (e.g. no route, a bad probe).
        case error
    }

    public var run: Int64
    public var target: String
    public var port: UInt16
    public var name: String?
    public var tag: String?
    public var origin: String
    public var status: Status
    public var verdict: String?
    public var findings: [String]
    public var started: Double
    public var finished: Double
    public var checks: [(String, JSON)]
    public var error: String?
    public var interference: [(check: String, CheckSummary.Interference)]

    public init(run: Int64, target: String, port: UInt16, name: String? = nil, tag: String? = nil, origin: String,
                status: Status, verdict: String? = nil, findings: [String] = [], started: Double, finished: Double,
                checks: [(String, JSON)] = [], error: String? = nil, interference: [(check: String, CheckSummary.Interference)] = []) {
        self.run = run
        self.target = target
        self.port = port
        self.name = name
        self.tag = tag
        self.origin = origin
        self.status = status
        self.verdict = verdict
        self.findings = findings
        self.started = started
        self.finished = finished
        self.checks = checks
        self.error = error
        self.interference = interference
    }

    /// A record from an engine outcome: the verdict of the session check when it ran, else the
    /// trace's; the findings of every check.
    public init(run: Int64, outcome o: ScanOutcome) {
        let summaries = o.checks.compactMap { c in c.summary.map { (c.name, $0) } }
        let main = summaries.first { $0.0 == "connect" } ?? summaries.first
        var seen = Set<String>()
        let findings = summaries.flatMap(\.1.findings).filter { seen.insert($0).inserted }
        let errors = o.checks.compactMap { c in c.error.map { "\(c.name): \($0)" } }
        self.init(run: run, target: o.target.address.description, port: o.target.port, name: o.target.name, tag: o.target.tag,
                  origin: o.target.origin, status: errors.isEmpty ? .ok : .error, verdict: main?.1.verdict,
                  findings: findings, started: o.started, finished: o.finished,
                  checks: o.checks.compactMap { c in c.document.map { (c.name, $0) } },
                  error: errors.isEmpty ? nil : errors.joined(separator: "; "),
                  interference: summaries.flatMap { name, s in s.interference.map { (name, $0) } })
    }

    /// The JSON Lines record. `schema` and `run` come first, so a resume can tell a run's lines
    /// by their prefix.
    public var json: JSON {
        .compact([
            ("schema", .string(Self.schema)), ("run", .int(run)),
            ("target", .string(target)), ("port", .number(port)),
            ("name", name.map { .string($0) } ?? .null), ("tag", tag.map { .string($0) } ?? .null),
            ("input", .string(origin)), ("status", .string(status.rawValue)),
            ("verdict", verdict.map { .string($0) } ?? .null),
            ("findings", .array(findings.map { .string($0) })),
            ("started", .double(started)), ("duration_s", .double(finished - started)),
            ("error", error.map { .string($0) } ?? .null),
            ("checks", .object(checks)),
        ])
    }

    public static func linePrefix(run: Int64) -> String { "{\"schema\":\"\(schema)\",\"run\":\(run)," }
}

/// A run as stored.
public struct ScanRunInfo: Sendable {
    public var id: Int64
    public var started: Double
    public var finished: Double?
    public var status: String
    public var parameters: String
    public var vantage: String
    public var stats: String?
}

/// The scan history in SQLite (WAL; one transaction per batch of results). See docs/scans.md
/// for the schema. Results are unique per (run, target, port): a target is recorded once per run
/// whatever the input repeats, and a resumed run skips what is recorded.
public final class ScanStore {
    public static let schemaVersion = "mptracebox.scan-db/1"
    let db: SQLiteDatabase
    private let insertResult: SQLiteDatabase.Statement
    private let insertInterference: SQLiteDatabase.Statement
    private let selectRecorded: SQLiteDatabase.Statement

    public init(path: String) throws {
        db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        // NORMAL in WAL mode: a committed transaction survives the process being killed.
        try db.execute("PRAGMA synchronous=NORMAL")
        try db.execute("""
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS runs (
              id INTEGER PRIMARY KEY,
              started REAL NOT NULL,
              finished REAL,
              status TEXT NOT NULL,
              parameters TEXT NOT NULL,
              vantage TEXT NOT NULL,
              stats TEXT
            );
            CREATE TABLE IF NOT EXISTS results (
              seq INTEGER PRIMARY KEY,
              run INTEGER NOT NULL REFERENCES runs(id),
              target TEXT NOT NULL,
              port INTEGER NOT NULL,
              name TEXT,
              tag TEXT,
              origin TEXT NOT NULL,
              status TEXT NOT NULL,
              verdict TEXT,
              findings TEXT NOT NULL,
              started REAL NOT NULL,
              finished REAL NOT NULL,
              record TEXT NOT NULL,
              UNIQUE (run, target, port)
            );
            CREATE TABLE IF NOT EXISTS interference (
              run INTEGER NOT NULL,
              target TEXT NOT NULL,
              port INTEGER NOT NULL,
              check_name TEXT NOT NULL,
              finding TEXT NOT NULL,
              ttl INTEGER NOT NULL,
              address TEXT
            );
            CREATE INDEX IF NOT EXISTS interference_by_run ON interference (run, address);
            INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '\(Self.schemaVersion)');
            """)
        let version = try db.prepare("SELECT value FROM meta WHERE key = 'schema'").query { $0.text(0) }.first ?? nil
        guard version == Self.schemaVersion else {
            throw ScanError.store("\(path) holds schema \(version ?? "none"), this build writes \(Self.schemaVersion)")
        }
        insertResult = try db.prepare("""
            INSERT OR IGNORE INTO results (run, target, port, name, tag, origin, status, verdict, findings, started, finished, record)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertInterference = try db.prepare(
            "INSERT INTO interference (run, target, port, check_name, finding, ttl, address) VALUES (?, ?, ?, ?, ?, ?, ?)")
        selectRecorded = try db.prepare("SELECT 1 FROM results WHERE run = ? AND target = ? AND port = ?")
    }

    public func close() { db.close() }

    public func beginRun(parameters: JSON, vantage: JSON, now: Double) throws -> Int64 {
        try db.prepare("INSERT INTO runs (started, status, parameters, vantage) VALUES (?, 'running', ?, ?)")
            .run([.double(now), .text(parameters.rendered()), .text(vantage.rendered())])
        return db.lastInsertRowID
    }

    public func markRunning(_ id: Int64) throws {
        try db.prepare("UPDATE runs SET status = 'running', finished = NULL WHERE id = ?").run([.int(id)])
    }

    public func finishRun(_ id: Int64, status: String, stats: JSON, now: Double) throws {
        try db.prepare("UPDATE runs SET finished = ?, status = ?, stats = ? WHERE id = ?")
            .run([.double(now), .text(status), .text(stats.rendered()), .int(id)])
    }

    public func run(_ id: Int64) throws -> ScanRunInfo? {
        try db.prepare("SELECT id, started, finished, status, parameters, vantage, stats FROM runs WHERE id = ?")
            .query([.int(id)], Self.runInfo).first
    }

    /// The most recent run, optionally only among unfinished ones (running or interrupted).
    public func latestRun(unfinished: Bool = false) throws -> ScanRunInfo? {
        let filter = unfinished ? "WHERE status IN ('running', 'interrupted')" : ""
        return try db.prepare("SELECT id, started, finished, status, parameters, vantage, stats FROM runs \(filter) ORDER BY id DESC LIMIT 1")
            .query([], Self.runInfo).first
    }

    public func runs() throws -> [ScanRunInfo] {
        try db.prepare("SELECT id, started, finished, status, parameters, vantage, stats FROM runs ORDER BY id").query([], Self.runInfo)
    }

    static func runInfo(_ r: SQLiteDatabase.Row) -> ScanRunInfo {
        ScanRunInfo(id: r.int(0), started: r.double(1), finished: r.isNull(2) ? nil : r.double(2), status: r.text(3) ?? "",
                    parameters: r.text(4) ?? "{}", vantage: r.text(5) ?? "{}", stats: r.text(6))
    }

    public func isRecorded(run: Int64, target: String, port: UInt16) throws -> Bool {
        !(try selectRecorded.query([.int(run), .text(target), .int(Int64(port))]) { _ in true }).isEmpty
    }

    /// Writes a batch in one transaction; returns the records that were new (the others were
    /// already recorded for their run and are dropped).
    public func commit(_ records: [ScanRecord]) throws -> [ScanRecord] {
        try commit(records, lines: records.map { $0.json.rendered() }).map { records[$0] }
    }

    /// The same with each record's JSON line rendered by the caller (rendered once, written
    /// twice); returns the indices of the records that were new.
    public func commit(_ records: [ScanRecord], lines: [String]) throws -> [Int] {
        guard !records.isEmpty else { return [] }
        precondition(records.count == lines.count, "one line per record")
        try db.execute("BEGIN IMMEDIATE")
        do {
            var inserted: [Int] = []
            for (index, r) in records.enumerated() {
                try insertResult.run([
                    .int(r.run), .text(r.target), .int(Int64(r.port)), r.name.map { .text($0) } ?? .null,
                    r.tag.map { .text($0) } ?? .null, .text(r.origin), .text(r.status.rawValue),
                    r.verdict.map { .text($0) } ?? .null, .text(r.findings.sorted().joined(separator: " ")),
                    .double(r.started), .double(r.finished), .text(lines[index]),
                ])
                guard db.changes == 1 else { continue }
                inserted.append(index)
                for (check, i) in r.interference {
                    try insertInterference.run([.int(r.run), .text(r.target), .int(Int64(r.port)), .text(check), .text(i.finding),
                                                .int(Int64(i.ttl)), i.address.map { .text($0) } ?? .null])
                }
            }
            try db.execute("COMMIT")
            return inserted
        } catch {
            try? db.execute("ROLLBACK")
            throw error
        }
    }

    public func recordCount(run: Int64) throws -> Int {
        Int(try db.prepare("SELECT count(*) FROM results WHERE run = ?").query([.int(run)]) { $0.int(0) }.first ?? 0)
    }

    /// The run's records in commit order, from the `skip`-th on, streamed.
    public func forEachRecord(run: Int64, skip: Int = 0, _ body: (String) throws -> Void) throws {
        try db.prepare("SELECT record FROM results WHERE run = ? ORDER BY seq LIMIT -1 OFFSET ?")
            .forEach([.int(run), .int(Int64(skip))]) { try body($0.text(0) ?? "") }
    }
}
