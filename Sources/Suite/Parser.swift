import Foundation
import Yams

/// Reads probe and suite files (YAML) into typed values, with file:line:column errors.
///
/// Yams gives every node its mark; each value keeps the location it was read from, so errors
/// found later (an undefined variable, a bad probe expression) still point into the file.
public enum SuiteParser {
    /// Parses one file's text. `file` is the path used in locations and for resolving the
    /// relative probe paths of a suite; `read` reads those (the file system by default).
    public static func parse(yaml: String, file: String, read: (String) throws -> String = readFile) throws -> SuiteSpec {
        var stack: [String] = []
        return try parseFile(yaml: yaml, file: file, read: read, stack: &stack)
    }

    /// Loads files and directories (every `*.yaml`/`*.yml` below, sorted), collecting every error.
    public static func load(paths: [String], read: (String) throws -> String = readFile) throws -> [SuiteSpec] {
        let (suites, errors) = loadCollecting(paths: paths, read: read)
        if !errors.isEmpty { throw SuiteErrors(errors) }
        return suites
    }

    /// The files that parsed, and the errors of those that did not.
    public static func loadCollecting(paths: [String], read: (String) throws -> String = readFile) -> ([SuiteSpec], [SuiteError]) {
        var suites: [SuiteSpec] = []
        var errors: [SuiteError] = []
        for path in paths {
            let files: [String]
            guard path.contains("*") || FileManager.default.fileExists(atPath: path) else {
                errors.append(SuiteError("no such file or directory: \(path)", at: nil))
                continue
            }
            do { files = try expand(path, relativeTo: nil, at: nil) } catch {
                errors.append(error as? SuiteError ?? SuiteError("\(path): \(error)", at: nil))
                continue
            }
            for f in files {
                do {
                    let text = try read(f)
                    suites.append(try parse(yaml: text, file: f, read: read))
                } catch let e as SuiteError {
                    errors.append(e)
                } catch let e as SuiteErrors {
                    errors += e.errors
                } catch {
                    errors.append(SuiteError("cannot read: \(error)", at: SourceLocation(file: f, line: 1, column: 1)))
                }
            }
        }
        return (suites, errors)
    }

    public static func readFile(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SuiteError("\(path): no such file, or not readable", at: nil)
        }
        guard let s = String(data: data, encoding: .utf8) else { throw SuiteError("\(path) is not UTF-8 text", at: nil) }
        return s
    }

    // MARK: Files

    static func parseFile(yaml: String, file: String, read: (String) throws -> String, stack: inout [String]) throws -> SuiteSpec {
        let root: Node
        do {
            guard let n = try Yams.compose(yaml: yaml) else {
                throw SuiteError("the file is empty: write a probe (probe: NAME) or a suite (suite: NAME)",
                                 at: SourceLocation(file: file, line: 1, column: 1))
            }
            root = n
        } catch let e as YamlError {
            throw yamlError(e, file: file)
        }
        let y = Y(file: file)
        let top = try y.mapping(root, what: "a probe or suite file")
        if top.value("suite") != nil {
            return try parseSuite(top, y: y, read: read, stack: &stack)
        }
        if top.value("probe") != nil {
            let probe = try parseProbe(top, y: y)
            return SuiteSpec(name: probe.name, description: probe.description, probes: [probe], location: probe.location,
                             isSingleProbe: true)
        }
        throw SuiteError("a probe file starts with 'probe: NAME', a suite file with 'suite: NAME'", at: y.loc(root))
    }

    static func parseSuite(_ m: YMapping, y: Y, read: (String) throws -> String, stack: inout [String]) throws -> SuiteSpec {
        try m.only(["suite", "description", "vars", "probes"], what: "suite")
        let name = try y.string(m.value("suite")!, what: "suite name")
        var suite = SuiteSpec(name: name, probes: [], location: y.loc(m.node))
        suite.description = try m.value("description").map { try y.string($0, what: "description") }
        if let v = m.value("vars") { suite.vars = try parseVars(v, y: y) }
        guard let list = m.value("probes") else { throw SuiteError("a suite needs 'probes:' (paths or inline probes)", at: y.loc(m.node)) }
        stack.append(y.file)
        defer { stack.removeLast() }
        for item in try y.sequence(list, what: "probes") {
            switch item {
            case .scalar:
                let path = try y.string(item, what: "probe path")
                for f in try expand(path, relativeTo: y.file, at: y.loc(item)) {
                    guard !stack.contains(f) else {
                        throw SuiteError("\(f) includes itself (through \(stack.joined(separator: " → ")))", at: y.loc(item))
                    }
                    let text: String
                    do { text = try read(f) } catch {
                        throw SuiteError((error as? SuiteError)?.message ?? "cannot read \(f): \(error)", at: y.loc(item))
                    }
                    let included = try parseFile(yaml: text, file: f, read: read, stack: &stack)
                    // An included suite's vars are its probes' defaults; this suite's vars still win.
                    suite.probes += included.probes.map { var p = $0; p.vars = p.vars.overlaid(with: included.vars); return p }
                }
            case .mapping:
                suite.probes.append(try parseProbe(try y.mapping(item, what: "probe"), y: y))
            default:
                throw SuiteError("each entry of 'probes:' is a path (string) or an inline probe (mapping)", at: y.loc(item))
            }
        }
        var seen: [String: SourceLocation] = [:]
        for p in suite.probes {
            if let first = seen[p.name] {
                throw SuiteError("probe name '\(p.name)' is used twice in suite '\(name)' (first at \(first))", at: p.location)
            }
            seen[p.name] = p.location
        }
        return suite
    }

    /// A path from the command line or a suite: a file, a directory (its YAML files, sorted,
    /// recursively) or a `*` pattern in the last component.
    static func expand(_ path: String, relativeTo base: String?, at location: SourceLocation?) throws -> [String] {
        var full = path
        if let base, !path.hasPrefix("/") {
            let dir = (base as NSString).deletingLastPathComponent
            full = dir.isEmpty ? path : dir + "/" + path
        }
        full = normalized(full)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if full.contains("*") {
            let dir = (full as NSString).deletingLastPathComponent
            let pattern = (full as NSString).lastPathComponent
            let names = (try? fm.contentsOfDirectory(atPath: dir.isEmpty ? "." : dir)) ?? []
            let matches = names.filter { fnmatch(pattern, $0, 0) == 0 }.sorted().map { dir.isEmpty ? $0 : dir + "/" + $0 }
            guard !matches.isEmpty else { throw SuiteError("no file matches \(path)", at: location) }
            return matches
        }
        // A plain file is returned as is: reading it reports a missing one (at the include's location).
        guard fm.fileExists(atPath: full, isDirectory: &isDir), isDir.boolValue else { return [full] }
        let all = (fm.enumerator(atPath: full)?.allObjects as? [String]) ?? []
        let files = all.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { full + "/" + $0 }
        guard !files.isEmpty else { throw SuiteError("no .yaml file in \(full)", at: location) }
        return files
    }

    /// `a/b/../c` → `a/c` (relative paths too, which Foundation leaves alone on Linux).
    static func normalized(_ path: String) -> String {
        var parts: [String] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true).map(String.init) {
            if c == "." { continue }
            if c == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            parts.append(c)
        }
        let joined = parts.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

    // MARK: Probes

    static let probeKeys = ["probe", "description", "tags", "send", "target", "port", "vars", "trace", "connect", "expect"]

    static func parseProbe(_ m: YMapping, y: Y) throws -> ProbeSpec {
        try m.only(probeKeys, what: "probe")
        guard let nameNode = m.value("probe") else { throw SuiteError("a probe needs 'probe: NAME'", at: y.loc(m.node)) }
        var p = ProbeSpec(name: try y.string(nameNode, what: "probe name"), location: y.loc(nameNode))
        p.description = try m.value("description").map { try y.string($0, what: "description") }
        if let t = m.value("tags") { p.tags = try y.sequence(t, what: "tags").map { try y.string($0, what: "tag") } }
        if let v = m.value("vars") { p.vars = try parseVars(v, y: y) }
        p.target = try m.value("target").map { try y.template($0, what: "target") }
        p.port = try m.value("port").map { try y.template($0, what: "port") }
        if let s = m.value("send") { p.send = try parseSend(s, y: y) }

        if let t = m.value("trace") { p.trace = try parseTrace(t, y: y) }
        if let c = m.value("connect") { p.connect = try parseConnect(c, y: y) }
        if let e = m.value("expect") {
            p.expectations = try y.sequence(e, what: "expect").map { try parseExpectation($0, y: y) }
        }
        // The checks an expectation needs run even when not asked for with their own key.
        if p.trace == nil, m.value("trace") == nil, p.expectations.contains(where: { !$0.needsSession }) { p.trace = TraceSettings() }
        if p.connect == nil, m.value("connect") == nil, p.expectations.contains(where: \.needsSession) {
            p.connect = ConnectSettings(location: y.loc(m.node))
        }
        if p.trace != nil, p.send.isEmpty {
            throw SuiteError("probe '\(p.name)' runs a trace but has no 'send:' (the segment to send)", at: y.loc(m.node))
        }
        if p.trace == nil, let e = p.expectations.first(where: { !$0.needsSession }) {
            throw SuiteError("this expectation needs the trace check, which 'trace: false' turned off", at: e.location)
        }
        if p.connect == nil, let e = p.expectations.first(where: \.needsSession) {
            throw SuiteError("this expectation needs the connect check, which 'connect: false' turned off", at: e.location)
        }
        if p.trace == nil, p.connect == nil {
            throw SuiteError("probe '\(p.name)' runs no check: give 'expect:', 'trace:' or 'connect:'", at: y.loc(m.node))
        }
        return p
    }

    static func parseVars(_ node: Node, y: Y) throws -> Variables {
        var v = Variables()
        let m = try y.mapping(node, what: "vars")
        for (k, value) in m.pairs {
            let name = try y.string(k, what: "variable name")
            guard Variables.isValidName(name) else { throw SuiteError("'\(name)' is not a variable name", at: y.loc(k)) }
            v[name] = try y.string(value, what: "value of \(name)")
        }
        return v
    }

    /// `send:` is a probe expression, or structured fields turned into one.
    static func parseSend(_ node: Node, y: Y) throws -> [Template] {
        if case .scalar = node { return [try y.template(node, what: "send")] }
        let m = try y.mapping(node, what: "send")
        try m.only(["ip", "ip6", "tcp", "options", "payload"], what: "send")
        var pieces: [Template] = []
        for key in ["ip", "ip6"] {
            guard let n = m.value(key) else { continue }
            pieces.append(try layer(key, n, y: y))
        }
        if let n = m.value("tcp") { pieces.append(try layer("tcp", n, y: y)) }
        if let n = m.value("options") {
            for o in try y.sequence(n, what: "options") {
                switch o {
                case .scalar: pieces.append(try y.template(o, what: "option"))
                case .mapping:
                    let om = try y.mapping(o, what: "option")
                    guard om.pairs.count == 1, let (k, v) = om.pairs.first else {
                        throw SuiteError("an option is 'NAME' or 'NAME: {field: value}', one per entry", at: y.loc(o))
                    }
                    pieces.append(try layer(try y.string(k, what: "option name"), v, y: y))
                default: throw SuiteError("an option is 'NAME(args)' or 'NAME: {field: value}'", at: y.loc(o))
                }
            }
        }
        if let n = m.value("payload") {
            if case .scalar = n {
                let t = try y.template(n, what: "payload")
                pieces.append(Template("payload(\"" + t.text + "\")", at: t.location, exactColumns: false))
            } else {
                pieces.append(try layer("payload", n, y: y))
            }
        }
        guard !pieces.isEmpty else { throw SuiteError("'send:' is empty", at: y.loc(node)) }
        return pieces
    }

    /// `name: {k: v, flags: [a, b]}` → `name(k=v,a,b)`; `name: "args"` → `name(args)`.
    static func layer(_ name: String, _ node: Node, y: Y) throws -> Template {
        let loc = y.loc(node)
        switch node {
        case .scalar(let s):
            if s.string.isEmpty || s.tag.description.hasSuffix("null") { return Template(name, at: loc, exactColumns: false) }
            return Template("\(name)(\(s.string))", at: loc, exactColumns: false)
        case .mapping:
            var args: [String] = []
            for (k, v) in try y.mapping(node, what: name).pairs {
                let key = try y.string(k, what: "field")
                switch v {
                case .sequence: args += try y.sequence(v, what: key).map { try y.string($0, what: key) }
                case .scalar(let s) where s.string == "true" && key != "flags": args.append(key)
                default: args.append("\(key)=\(try y.string(v, what: key))")
                }
            }
            return Template(args.isEmpty ? name : "\(name)(\(args.joined(separator: ",")))", at: loc, exactColumns: false)
        default:
            throw SuiteError("\(name): expected fields (a mapping) or arguments (a string)", at: loc)
        }
    }

    static func parseTrace(_ node: Node, y: Y) throws -> TraceSettings? {
        if case .scalar = node { return try y.bool(node, what: "trace") ? TraceSettings() : nil }
        let m = try y.mapping(node, what: "trace")
        try m.only(["min-ttl", "max-ttl", "timeout", "retries", "sequential", "proxy-check", "blackhole-check"], what: "trace")
        var t = TraceSettings()
        t.minTTL = try m.value("min-ttl").map { try y.template($0, what: "min-ttl") }
        t.maxTTL = try m.value("max-ttl").map { try y.template($0, what: "max-ttl") }
        t.timeout = try m.value("timeout").map { try y.template($0, what: "timeout") }
        t.retries = try m.value("retries").map { try y.template($0, what: "retries") }
        t.sequential = try m.value("sequential").map { try y.bool($0, what: "sequential") }
        t.proxyCheck = try m.value("proxy-check").map { try y.bool($0, what: "proxy-check") }
        t.blackholeCheck = try m.value("blackhole-check").map { try y.bool($0, what: "blackhole-check") }
        return t
    }

    static let connectKeys = ["mode", "bytes", "join", "add-addr", "timeout", "checksum", "version"]

    static func parseConnect(_ node: Node, y: Y) throws -> ConnectSettings? {
        if case .scalar = node { return try y.bool(node, what: "connect") ? ConnectSettings(location: y.loc(node)) : nil }
        let m = try y.mapping(node, what: "connect")
        try m.only(connectKeys, what: "connect")
        var c = ConnectSettings(location: y.loc(node))
        for (k, v) in m.pairs { c.options[try y.string(k, what: "setting")] = try y.template(v, what: "setting") }
        return c
    }

    // MARK: Expectations

    static let expectationKinds = ["option", "no-finding", "finding", "destination", "mss", "verdict", "join", "add-addr"]

    static func parseExpectation(_ node: Node, y: Y) throws -> Expectation {
        let m = try y.mapping(node, what: "expectation")
        let loc = y.loc(node)
        let present = expectationKinds.filter { m.value($0) != nil }
        // `option:` narrows a finding expectation; alone it is the option expectation.
        let kinds = present.contains("no-finding") || present.contains("finding") ? present.filter { $0 != "option" } : present
        guard kinds.count == 1, let kind = kinds.first else {
            let what = kinds.isEmpty ? "no kind" : "several kinds (\(kinds.joined(separator: ", ")))"
            throw SuiteError("an expectation has one of \(expectationKinds.joined(separator: ", ")); this one has \(what)", at: loc)
        }
        var allowed = ["severity", "name", kind]
        switch kind {
        case "option": allowed.append("intact")
        case "no-finding", "finding": allowed += ["before", "option"]
        default: break
        }
        try m.only(allowed, what: "\(kind) expectation")
        let severity: Severity = try m.value("severity").map { n in
            let s = try y.string(n, what: "severity")
            guard let v = Severity(rawValue: s) else { throw SuiteError("severity is fail or warn, not '\(s)'", at: y.loc(n)) }
            return v
        } ?? .fail
        let name = try m.value("name").map { try y.string($0, what: "name") }
        let value = m.value(kind)!

        func option(_ n: Node) throws -> OptionRef {
            let s = try y.string(n, what: "option")
            guard let o = OptionRef(parsing: s) else {
                throw SuiteError("unknown option '\(s)' (a probe-language name such as mpcapable, mpjoin, dss, addaddr, mss, "
                                 + "tfo, or KIND, KIND/SUBTYPE)", at: y.loc(n))
            }
            return o
        }
        func ids(_ n: Node, what: String) throws -> [String] {
            if case .sequence = n { return try y.sequence(n, what: what).map { try y.string($0, what: what) } }
            return [try y.string(n, what: what)]
        }
        func findingPattern(_ n: Node) throws -> String {
            let p = try y.string(n, what: "finding id")
            let stem = p.hasSuffix("*") ? String(p.dropLast()) : p
            guard !stem.isEmpty || p == "*", stem.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" }) else {
                throw SuiteError("'\(p)' is not a finding id (e.g. option.removed, tcp.mss.changed) or a prefix glob (option.*)", at: y.loc(n))
            }
            return p
        }

        let k: Expectation.Kind
        switch kind {
        case "option":
            var reach = Reach.lastQuote
            if let r = m.value("intact") {
                let s = try y.string(r, what: "intact")
                switch s {
                case "last-quote", "last-hop": reach = .lastQuote
                case "destination": reach = .destination
                default: reach = .hop(try y.template(r, what: "intact"))
                }
            }
            k = .optionIntact(try option(value), reach: reach)
        case "no-finding", "finding":
            let pattern = try findingPattern(value)
            let before = try m.value("before").map { try y.template($0, what: "before") }
            let o = try m.value("option").map(option)
            k = kind == "finding" ? .finding(pattern: pattern, before: before, option: o) : .noFinding(pattern: pattern, before: before, option: o)
        case "destination":
            k = .destination(try parseDestination(value, y: y, option: option))
        case "mss":
            if case .mapping = value {
                let mm = try y.mapping(value, what: "mss")
                try mm.only(["min"], what: "mss")
                guard let n = mm.value("min") else { throw SuiteError("mss: {min: N}", at: y.loc(value)) }
                k = .mssAtLeast(try y.template(n, what: "min"))
            } else {
                k = .mssAtLeast(try y.template(value, what: "mss"))
            }
        case "verdict": k = .verdict(try ids(value, what: "verdict"))
        case "join": k = .join(try ids(value, what: "join outcome"))
        default: k = .addAddress(try ids(value, what: "add-addr outcome"))
        }
        return Expectation(kind: k, severity: severity, name: name, location: loc)
    }

    static func parseDestination(_ node: Node, y: Y, option: (Node) throws -> OptionRef) throws -> DestinationCheck {
        if case .scalar = node {
            switch try y.string(node, what: "destination") {
            case "reached": return DestinationCheck(reached: true)
            case "not-reached", "unreached": return DestinationCheck(reached: false)
            case let s: throw SuiteError("destination is 'reached', 'not-reached' or a mapping {reached, reply, flags, options}, not '\(s)'", at: y.loc(node))
            }
        }
        let m = try y.mapping(node, what: "destination")
        try m.only(["reached", "reply", "flags", "options", "no-options"], what: "destination")
        var d = DestinationCheck()
        d.reached = try m.value("reached").map { try y.bool($0, what: "reached") }
        func list(_ key: String) throws -> [Node] {
            guard let n = m.value(key) else { return [] }
            if case .sequence = n { return try y.sequence(n, what: key) }
            return [n]
        }
        d.replies = try list("reply").map { n in
            let s = try y.string(n, what: "reply")
            guard ["synack", "rst", "tcp", "unreachable"].contains(s) else {
                throw SuiteError("reply is synack, rst, tcp or unreachable, not '\(s)'", at: y.loc(n))
            }
            return s
        }
        d.flags = try list("flags").map { n in
            let s = try y.string(n, what: "flag").lowercased()
            guard DestinationCheck.flagNames[s] != nil else {
                throw SuiteError("unknown TCP flag '\(s)' (fin, syn, rst, psh, ack, urg, ece, cwr, ae)", at: y.loc(n))
            }
            return s
        }
        d.options = try list("options").map(option)
        d.withoutOptions = try list("no-options").map(option)
        return d
    }

    // MARK: Errors from Yams

    static func yamlError(_ e: YamlError, file: String) -> SuiteError {
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return SuiteError("YAML: \(problem)", at: SourceLocation(file: file, line: mark.line, column: mark.column))
        case .duplicatedKeysInMapping(let keys, let context):
            let list = keys.map { "'\($0)'" }.joined(separator: ", ")
            return SuiteError("key \(list) given more than once in the same mapping",
                              at: SourceLocation(file: file, line: context.mark.line, column: context.mark.column))
        default:
            return SuiteError("YAML: \(e)", at: SourceLocation(file: file, line: 1, column: 1))
        }
    }
}

extension DestinationCheck {
    static let flagNames: [String: UInt16] = ["fin": 0x1, "syn": 0x2, "rst": 0x4, "psh": 0x8, "ack": 0x10, "urg": 0x20,
                                              "ece": 0x40, "cwr": 0x80, "ae": 0x100]
}

// MARK: - Typed access to Yams nodes

/// Typed reads of Yams nodes that fail with the node's location.
struct Y {
    let file: String

    func loc(_ n: Node) -> SourceLocation {
        let m = n.mark
        return SourceLocation(file: file, line: m?.line ?? 1, column: m?.column ?? 1)
    }

    func mapping(_ n: Node, what: String) throws -> YMapping {
        guard case .mapping(let m) = n else { throw SuiteError("\(what): expected a mapping (key: value lines)", at: loc(n)) }
        var seen: [String: Node] = [:]
        for (k, _) in m {
            guard case .scalar(let s) = k else { throw SuiteError("\(what): keys are plain words", at: loc(k)) }
            if let first = seen[s.string] {
                throw SuiteError("\(what): key '\(s.string)' given twice (first at line \(loc(first).line))", at: loc(k))
            }
            seen[s.string] = k
        }
        return YMapping(node: n, pairs: Array(m), y: self)
    }

    func sequence(_ n: Node, what: String) throws -> [Node] {
        guard case .sequence(let s) = n else { throw SuiteError("\(what): expected a list (- item lines)", at: loc(n)) }
        return Array(s)
    }

    func string(_ n: Node, what: String) throws -> String {
        guard case .scalar(let s) = n else { throw SuiteError("\(what): expected a single value, not a list or mapping", at: loc(n)) }
        return s.string
    }

    func bool(_ n: Node, what: String) throws -> Bool {
        let s = try string(n, what: what)
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw SuiteError("\(what) is true or false, not '\(s)'", at: loc(n))
        }
    }

    /// A scalar as a template whose columns map onto the file when the scalar is on one line.
    func template(_ n: Node, what: String) throws -> Template {
        guard case .scalar(let s) = n else { throw SuiteError("\(what): expected a single value, not a list or mapping", at: loc(n)) }
        var l = loc(n)
        var exact = !s.string.contains("\n")
        switch s.style {
        case .plain: break
        case .singleQuoted: l = l.advanced(by: 1); exact = exact && !s.string.contains("'")
        case .doubleQuoted: l = l.advanced(by: 1); exact = exact && !s.string.contains("\\") && !s.string.contains("\"")
        default: exact = false
        }
        return Template(s.string, at: l, exactColumns: exact)
    }
}

/// A mapping node's pairs, with lookups and a check against unknown keys.
struct YMapping {
    let node: Node
    let pairs: [(Node, Node)]
    let y: Y

    func value(_ key: String) -> Node? {
        pairs.first { if case .scalar(let s) = $0.0 { return s.string == key } else { return false } }?.1
    }

    func only(_ allowed: [String], what: String) throws {
        for (k, _) in pairs {
            guard case .scalar(let s) = k, !allowed.contains(s.string) else { continue }
            let near = allowed.min { editDistance($0, s.string) < editDistance($1, s.string) }
            let hint = near.flatMap { editDistance($0, s.string) <= 3 ? " (did you mean '\($0)'?)" : nil } ?? ""
            throw SuiteError("unknown key '\(s.string)' in \(what)\(hint); known: \(allowed.joined(separator: ", "))", at: y.loc(k))
        }
    }
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}
