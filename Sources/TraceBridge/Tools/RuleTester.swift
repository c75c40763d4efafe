import Foundation
import LogParsers
import TraceBridgeCore

/// `tracebridge rules test`: runs a source's rules over sample lines and shows, for each
/// record, the rule that matched and the event it makes — or that no rule matched. The output
/// (one JSON object a line) doubles as a golden file: `--expect` compares against it, so
/// integrators keep rule tests in their own CI.
public struct RuleTester {
  public let configuration: Configuration

  public init(configuration: Configuration) { self.configuration = configuration }

  public struct Result {
    /// One JSON object a record.
    public var lines: [String] = []
    public var matched: [String: Int] = [:]
    public var unmatchedLines: [Int] = []
    public var rejectedLines: [(line: Int, reason: String)] = []
    public var records = 0
  }

  /// Chooses the source for `path`: `named`, else the one whose paths claim the file's name,
  /// else the only source.
  public func source(for path: String?, named: String?) throws -> SourceDefinition {
    if let named {
      guard let s = configuration.source(named: named) else {
        throw CLIError(
          "no source named '\(named)'; sources are: \(configuration.sources.map(\.name).joined(separator: ", "))",
          exitCode: 2)
      }
      return s
    }
    if let path, path != "-" {
      let name = URL(fileURLWithPath: path).lastPathComponent
      if let s = configuration.sources.first(where: { s in
        s.paths.contains {
          RotatedFileSet.belongs(name, to: URL(fileURLWithPath: $0).lastPathComponent)
        }
      }) {
        return s
      }
    }
    if configuration.sources.count == 1 { return configuration.sources[0] }
    throw CLIError(
      "cannot tell which source \(path.map { "'\($0)'" } ?? "standard input") belongs to; pass --source with one of: \(configuration.sources.map(\.name).joined(separator: ", "))",
      exitCode: 2)
  }

  public func run(path: String, source: SourceDefinition) throws -> Result {
    let (rules, indices) = configuration.rules(for: source.name)
    let evaluator = RuleEvaluator(source: source, rules: rules, ruleIndices: indices)
    let file = try LogFileReader(path: path == "-" ? "/dev/stdin" : path)
    defer { file.close() }
    let reader = RecordReader(file: file, source: source)
    var result = Result()
    try reader.readAll { record in
      result.records += 1
      let key = SourceKey(source: source.name, stream: reader.fingerprint, position: record.offset)
      switch evaluator.evaluate(record.text, sourceKey: key) {
      case .matched(let rule, let event):
        let name = configuration.rules[rule].name
        result.matched[name, default: 0] += 1
        result.lines.append(
          Self.json([
            "line": .int(record.line), "rule": .string(name), "event": Self.eventJSON(event),
          ]))
      case .rejected(let rule, let reason):
        result.rejectedLines.append((record.line, reason.rawValue))
        result.lines.append(
          Self.json([
            "line": .int(record.line), "rule": .string(configuration.rules[rule].name),
            "rejected": .string(reason.rawValue),
            "text": .string(String(decoding: record.text, as: UTF8.self)),
          ]))
      case .unmatched:
        result.unmatchedLines.append(record.line)
        result.lines.append(
          Self.json([
            "line": .int(record.line), "unmatched": .bool(true),
            "text": .string(String(decoding: record.text, as: UTF8.self)),
          ]))
      }
    }
    return result
  }

  /// Chooses the queue source for sample messages: `named`, else the only queue source.
  public func messageSource(named: String?) throws -> SourceDefinition {
    let queues = configuration.sources.filter { configuration.amqpSources[$0.name] != nil }
    if let named {
      let s = try source(for: nil, named: named)
      guard configuration.amqpSources[s.name] != nil else {
        throw CLIError(
          "source '\(named)' reads files, not a queue; sample messages go to one of: \(queues.isEmpty ? "(no queue sources)" : queues.map(\.name).joined(separator: ", "))",
          exitCode: 2)
      }
      return s
    }
    if queues.count == 1 { return queues[0] }
    throw CLIError(
      queues.isEmpty
        ? "no source reads a queue (amqp:); sample messages need one"
        : "pass --source with one of the queue sources: \(queues.map(\.name).joined(separator: ", "))",
      exitCode: 2)
  }

  /// Runs the source's rules over sample messages: each a body file, with its properties and
  /// headers from `<body>.amqp.json` beside it (or `properties` for a single message) —
  /// `{"properties": {"content_type": "application/xml", "timestamp": 1764…, "routing_key": …},
  /// "headers": {"x-type": "…"}}`. One JSON object a message: the rule and its event, or the
  /// reason the message would be dead-lettered.
  public func runMessages(paths: [String], properties: String?, source: SourceDefinition) throws
    -> Result
  {
    let (rules, indices) = configuration.rules(for: source.name)
    let evaluator = RuleEvaluator(source: source, rules: rules, ruleIndices: indices)
    let queue = configuration.amqpSources[source.name]?.queue ?? ""
    var result = Result()
    for (n, path) in paths.enumerated() {
      guard let body = FileManager.default.contents(atPath: path) else {
        throw CLIError("cannot read the message body \(path)", exitCode: 2)
      }
      var message = MessageInput(
        queue: queue, body: [UInt8](body),
        receivedUnixNano: Int64(Date().timeIntervalSince1970 * 1e9))
      let sidecar =
        properties
        ?? (FileManager.default.fileExists(atPath: path + ".amqp.json") ? path + ".amqp.json" : nil)
      if let sidecar { try Self.applyProperties(sidecar, to: &message) }
      result.records += 1
      let key = SourceKey(source: source.name, stream: 0, position: UInt64(n))
      let evaluation = evaluator.evaluate(message: message, sourceKey: key)
      var extra: [(String, JSONValue)] = [("charset", .string(evaluation.charset))]
      if evaluation.invalidBytes > 0 {
        extra.append(("invalid_bytes", .int(evaluation.invalidBytes)))
      }
      if let p = evaluation.charsetProblem { extra.append(("charset_problem", .string(p))) }
      switch evaluation.outcome {
      case .matched(let rule, let event):
        let name = configuration.rules[rule].name
        result.matched[name, default: 0] += 1
        result.lines.append(
          Self.json(
            .object(
              [
                ("message", .string(path)), ("rule", .string(name)),
                ("event", Self.eventJSON(event)),
              ] + extra)))
      case .rejected(let rule, let reason):
        result.rejectedLines.append((n + 1, reason.rawValue))
        result.lines.append(
          Self.json(
            .object(
              [
                ("message", .string(path)), ("rule", .string(configuration.rules[rule].name)),
                (
                  "dead_letter",
                  .string("\(reason.rawValue) (rule \(configuration.rules[rule].name))")
                ),
              ] + extra)))
      case .unmapped(let why):
        result.unmatchedLines.append(n + 1)
        result.lines.append(
          Self.json(.object([("message", .string(path)), ("dead_letter", .string(why))] + extra)))
      }
    }
    return result
  }

  /// Reads `{"properties": {…}, "headers": {…}}` into `message`.
  static func applyProperties(_ path: String, to message: inout MessageInput) throws {
    guard let data = FileManager.default.contents(atPath: path),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else {
      throw CLIError(
        "\(path): not a JSON object like {\"properties\": {…}, \"headers\": {…}}", exitCode: 2)
    }
    func text(_ v: Any) -> String {
      if let s = v as? String { return s }
      if let n = v as? NSNumber { return n.stringValue }
      return "\(v)"
    }
    for key in object.keys where key != "properties" && key != "headers" {
      throw CLIError("\(path): unknown key '\(key)'; give properties and headers", exitCode: 2)
    }
    for (k, v) in (object["properties"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
      guard let p = MessageProperty(rawValue: k) else {
        throw CLIError(
          "\(path): unknown property '\(k)'; properties are \(MessageProperty.allCases.map(\.rawValue).joined(separator: ", "))",
          exitCode: 2)
      }
      let s = text(v)
      switch p {
      case .messageID: message.messageID = s
      case .correlationID: message.correlationID = s
      case .timestamp:
        guard let t = UInt64(s) else {
          throw CLIError(
            "\(path): properties.timestamp must be seconds since the epoch, not '\(s)'", exitCode: 2
          )
        }
        message.timestamp = t
      case .type: message.type = s
      case .appID: message.appID = s
      case .userID: message.userID = s
      case .contentType: message.contentType = s
      case .contentEncoding: message.contentEncoding = s
      case .exchange: message.exchange = s
      case .routingKey: message.routingKey = s
      case .queue: message.queue = s
      }
    }
    for (k, v) in (object["headers"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
      message.headers.append((k, text(v)))
    }
  }

  /// Compares `actual` output lines to the golden file's; returns human-readable differences.
  public static func differences(actual: [String], expected: [String]) -> [String] {
    var diffs: [String] = []
    for i in 0..<max(actual.count, expected.count) {
      let a = i < actual.count ? actual[i] : nil
      let e = i < expected.count ? expected[i] : nil
      if a != e {
        diffs.append(
          "record \(i + 1):\n  expected: \(e ?? "(nothing)")\n  actual:   \(a ?? "(nothing)")")
      }
    }
    return diffs
  }

  indirect enum JSONValue {
    case string(String)
    case int(Int)
    case bool(Bool)
    case object([(String, JSONValue)])
  }

  static func eventJSON(_ e: OrderEvent) -> JSONValue {
    var fields: [(String, JSONValue)] = []
    switch e.key {
    case .order(let id): fields.append(("order_id", .string(id)))
    case .alias(let a): fields.append(("alias", .string(a.description)))
    }
    fields.append(("service", .string(e.service)))
    fields.append(("kind", .string(e.kind.rawValue)))
    if let s = e.status { fields.append(("status", .string(s))) }
    if let s = e.step { fields.append(("step", .string(s))) }
    fields.append(("name", .string(e.name)))
    fields.append(("time", .string(Self.iso(e.timeUnixNano))))
    fields.append(("zone", .string(e.zoneRule)))
    if let u = e.userID { fields.append(("user_id", .string(u))) }
    if !e.attributes.isEmpty {
      fields.append(
        (
          "attributes",
          .object(
            e.attributes.map { a in
              switch a.value {
              case .string(let s): return (a.key, .string(s))
              case .int(let i): return (a.key, .int(Int(i)))
              case .bool(let b): return (a.key, .bool(b))
              case .double(let d): return (a.key, .string("\(d)"))
              }
            })
        ))
    }
    if let l = e.link {
      fields.append(
        (
          "link",
          .object([("alias", .string(l.alias.description)), ("order_id", .string(l.orderID))])
        ))
    }
    return .object(fields)
  }

  static func json(_ value: JSONValue) -> String {
    var out: [UInt8] = []
    write(value, to: &out)
    return String(decoding: out, as: UTF8.self)
  }

  static func json(_ fields: KeyValuePairs<String, JSONValue>) -> String {
    var out: [UInt8] = []
    write(.object(fields.map { ($0.key, $0.value) }), to: &out)
    return String(decoding: out, as: UTF8.self)
  }

  static func write(_ v: JSONValue, to out: inout [UInt8]) {
    switch v {
    case .string(let s): RejectedWriter.appendString(&out, s)
    case .int(let i): out.append(contentsOf: "\(i)".utf8)
    case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
    case .object(let fields):
      out.append(0x7B)
      for (i, (k, value)) in fields.enumerated() {
        if i > 0 { out.append(0x2C) }
        RejectedWriter.appendString(&out, k)
        out.append(0x3A)
        write(value, to: &out)
      }
      out.append(0x7D)
    }
  }

  /// `2026-03-29T01:59:58.123Z`, with as many fraction digits as the time needs (0, 3, 6 or 9).
  public static func iso(_ ns: Int64) -> String {
    let seconds = ns >= 0 ? ns / 1_000_000_000 : (ns - 999_999_999) / 1_000_000_000
    let fraction = ns - seconds * 1_000_000_000
    let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
    let secOfDay = seconds - days * 86400
    let (y, m, d) = civil(fromDays: days)
    var s = String(
      format: "%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, secOfDay / 3600, secOfDay / 60 % 60,
      secOfDay % 60)
    if fraction != 0 {
      if fraction % 1_000_000 == 0 {
        s += String(format: ".%03d", fraction / 1_000_000)
      } else if fraction % 1000 == 0 {
        s += String(format: ".%06d", fraction / 1000)
      } else {
        s += String(format: ".%09d", fraction)
      }
    }
    return s + "Z"
  }

  /// Howard Hinnant's civil_from_days.
  static func civil(fromDays z0: Int64) -> (Int, Int, Int) {
    let z = z0 + 719468
    let era = (z >= 0 ? z : z - 146096) / 146097
    let doe = z - era * 146097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    let y = yoe + era * 400
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (Int(m <= 2 ? y + 1 : y), Int(m), Int(d))
  }
}
