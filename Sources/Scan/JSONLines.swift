import Foundation

/// Writes JSON Lines to stdout or a file, one flush per batch.
///
/// With a store, lines are written only after their batch is committed, in commit order, so
/// the file of a run is always a prefix of the run's records in the store (plus, after a kill,
/// possibly one partial line). `reconcile` restores the rest on resume.
public final class JSONLinesWriter {
    private let file: UnsafeMutablePointer<FILE>
    private let owned: Bool
    public let path: String?

    /// Standard output.
    public init() {
        file = stdout
        owned = false
        path = nil
    }

    /// Appends to `path` (created when missing).
    public init(path: String) throws {
        guard let f = fopen(path, "a") else {
            throw ScanError.output("cannot open \(path) for writing: \(String(cString: strerror(errno)))")
        }
        file = f
        owned = true
        self.path = path
    }

    deinit { if owned { fclose(file) } }

    public func write(_ lines: [String]) throws {
        guard !lines.isEmpty else { return }
        for l in lines {
            guard fputs(l, file) >= 0, fputc(0x0a, file) >= 0 else {
                throw ScanError.output("write to \(path ?? "stdout") failed: \(String(cString: strerror(errno)))")
            }
        }
        guard fflush(file) == 0 else { throw ScanError.output("flush of \(path ?? "stdout") failed: \(String(cString: strerror(errno)))") }
    }

    /// Makes `path` hold every record of `run` that the store holds: drops a partial last line,
    /// counts the run's complete lines (they are the store's first records in commit order) and
    /// appends the store's records after them. Returns how many were appended.
    @discardableResult
    public static func reconcile(path: String, run: Int64, store: ScanStore) throws -> Int {
        var present = 0
        var completeEnd: Int64 = 0
        if let f = fopen(path, "r") {
            defer { fclose(f) }
            let prefix = ScanRecord.linePrefix(run: run)
            var buffer: UnsafeMutablePointer<CChar>?
            var capacity = 0
            defer { free(buffer) }
            var offset: Int64 = 0
            while true {
                let n = getline(&buffer, &capacity, f)
                if n < 0 { break }
                offset += Int64(n)
                guard let b = buffer, b[n - 1] == 0x0a else { break } // partial last line
                completeEnd = offset
                if strncmp(b, prefix, prefix.utf8.count) == 0 { present += 1 }
            }
            var st = stat()
            if stat(path, &st) == 0, Int64(st.st_size) > completeEnd {
                guard truncate(path, off_t(completeEnd)) == 0 else {
                    throw ScanError.output("cannot drop the partial last line of \(path): \(String(cString: strerror(errno)))")
                }
            }
        }
        let writer = try JSONLinesWriter(path: path)
        var appended = 0
        var batch: [String] = []
        try store.forEachRecord(run: run, skip: present) { line in
            batch.append(line)
            appended += 1
            if batch.count >= 1024 { try writer.write(batch); batch.removeAll(keepingCapacity: true) }
        }
        try writer.write(batch)
        return appended
    }
}
