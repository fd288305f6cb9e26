import CSQLite

/// A SQLite connection: one class owns the pointer, every return code is checked in `check`.
final class SQLiteDatabase {
    private var db: OpaquePointer?
    let path: String

    init(path: String, readOnly: Bool = false) throws {
        self.path = path
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        // Serialized: the scan's writer thread commits while the dispatcher asks what is recorded.
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_FULLMUTEX, nil)
        guard rc == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(db)
            db = nil
            throw ScanError.store("cannot open \(path): \(message)")
        }
        // Another scan or a report may hold the lock for a moment.
        try check(sqlite3_busy_timeout(db, 5000), "busy_timeout")
    }

    deinit { close() }

    func close() {
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    func check(_ rc: Int32, _ what: String) throws {
        guard rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW else {
            let detail = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            throw ScanError.store("\(what) on \(path): \(detail)")
        }
    }

    func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(error)
            throw ScanError.store("\(message) (in \(sql.prefix(60))…) on \(path)")
        }
    }

    func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        try check(sqlite3_prepare_v2(db, sql, -1, &stmt, nil), "prepare \(sql.prefix(60))")
        guard let s = stmt else { throw ScanError.store("empty statement: \(sql)") }
        return Statement(s, database: self)
    }

    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(db) }
    var changes: Int { Int(sqlite3_changes(db)) }

    /// A prepared statement; values bound by position (1-based).
    final class Statement {
        private let stmt: OpaquePointer
        private unowned let database: SQLiteDatabase

        init(_ stmt: OpaquePointer, database: SQLiteDatabase) {
            self.stmt = stmt
            self.database = database
        }

        deinit { sqlite3_finalize(stmt) }

        enum Value {
            case int(Int64)
            case double(Double)
            case text(String)
            case null
        }

        private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

        func bind(_ values: [Value]) throws {
            try database.check(sqlite3_reset(stmt), "reset")
            try database.check(sqlite3_clear_bindings(stmt), "clear_bindings")
            for (i, v) in values.enumerated() {
                let index = Int32(i + 1)
                switch v {
                case .int(let x): try database.check(sqlite3_bind_int64(stmt, index, x), "bind")
                case .double(let x): try database.check(sqlite3_bind_double(stmt, index, x), "bind")
                case .text(let s): try database.check(sqlite3_bind_text(stmt, index, s, -1, Self.transient), "bind")
                case .null: try database.check(sqlite3_bind_null(stmt, index), "bind")
                }
            }
        }

        /// Runs to completion (INSERT/UPDATE).
        func run(_ values: [Value] = []) throws {
            try bind(values)
            let rc = sqlite3_step(stmt)
            try database.check(rc, "step")
        }

        /// Rows, each read by `row` while the statement is positioned on it.
        func query<T>(_ values: [Value] = [], _ row: (Row) throws -> T) throws -> [T] {
            try bind(values)
            var out: [T] = []
            while true {
                let rc = sqlite3_step(stmt)
                if rc == SQLITE_DONE { break }
                guard rc == SQLITE_ROW else { try database.check(rc, "step"); break }
                out.append(try row(Row(stmt: stmt)))
            }
            return out
        }

        /// Streams rows without collecting them.
        func forEach(_ values: [Value] = [], _ row: (Row) throws -> Void) throws {
            try bind(values)
            while true {
                let rc = sqlite3_step(stmt)
                if rc == SQLITE_DONE { break }
                guard rc == SQLITE_ROW else { try database.check(rc, "step"); break }
                try row(Row(stmt: stmt))
            }
        }
    }

    struct Row {
        let stmt: OpaquePointer
        func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
        func double(_ i: Int32) -> Double { sqlite3_column_double(stmt, i) }
        func text(_ i: Int32) -> String? {
            guard sqlite3_column_type(stmt, i) != SQLITE_NULL, let p = sqlite3_column_text(stmt, i) else { return nil }
            return String(cString: p)
        }
        func isNull(_ i: Int32) -> Bool { sqlite3_column_type(stmt, i) == SQLITE_NULL }
    }
}
