import ArgumentParser
import Exporters
import Foundation
import LogParsers
import TraceBridge

#if canImport(Glibc)
  import Glibc
#endif

struct Backfill: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Read archived logs (plain or .gz, rotated sets) and export one trace per order.",
    discussion: """
      Reads the given files and directories — or, with none, every configured source's files
      and their rotated siblings — oldest first within each rotated set (mes.log.2.gz,
      mes.log.1, mes.log), merges the sources by event time, builds each order's timeline,
      and exports its spans. Ids are deterministic: running it twice over the same logs
      produces byte-identical spans, which Jaeger stores once.

      Records no rule matches are counted and kept in the rejected file (one JSON object a
      line) with the reason; nothing read is silently dropped.

      Bus history: --amqp-stream QUEUE replays a RabbitMQ stream queue from --since (its
      x-stream-offset; from the first message without --since) through the message rules
      of the queue source consuming it (or --amqp-source), with the broker of amqp: in the
      configuration. A stream has no end: the replay stops after --amqp-idle seconds
      without a message, or at the first message published at or after --until. Message
      identities are those of `run`, so replayed spans equal the live ones.

      Examples:
        tracebridge backfill -c tracebridge.yaml /archive/2026-11/
        tracebridge backfill -c tracebridge.yaml --export http://jaeger:4318/v1/traces --since 2026-11-01
        tracebridge backfill -c tracebridge.yaml --export file:out/traces.jsonl
        tracebridge backfill -c tracebridge.yaml --amqp-stream shop.order-history --since 2026-11-01
      """)

  @OptionGroup var options: ConfigOptions

  @Option(
    help: ArgumentHelp(
      "Where spans go, overriding the configuration's exporter.",
      discussion:
        "http(s)://host:4318/v1/traces (OTLP/HTTP protobuf), file:PATH (OTLP JSON lines), or discard.",
      valueName: "url"))
  var export: String?

  @Option(
    help: ArgumentHelp(
      "Only events at or after this time (ISO 8601; a date alone means 00:00 UTC).",
      valueName: "time"))
  var since: String?

  @Option(
    help: ArgumentHelp(
      "Only events before this time (ISO 8601; a date alone means 00:00 UTC).", valueName: "time"))
  var until: String?

  @Option(
    help: ArgumentHelp(
      "The state store to write timelines into (default: the configuration's store.path).",
      valueName: "path"))
  var store: String?

  @Flag(help: "Do not write the state store.")
  var noStore = false

  @Option(
    help: ArgumentHelp(
      "Where set-aside records go (default: the configuration's rejected.path).", valueName: "path")
  )
  var rejected: String?

  @Flag(help: "Only count records no rule matched; do not copy them to the rejected file.")
  var countUnmatchedOnly = false

  @Option(help: ArgumentHelp("Also write the summary as JSON to this file.", valueName: "path"))
  var summaryJson: String?

  @Flag(
    inversion: .prefixedNo,
    help: "Show a progress line (default: when standard error is a terminal).")
  var progress: Bool?

  @Flag(name: .shortAndLong, help: "Print nothing but errors.")
  var quiet = false

  @Option(
    name: .customLong("amqp-stream"),
    help: ArgumentHelp(
      "Replay a RabbitMQ stream queue (x-queue-type: stream) from --since (repeatable); without paths, only the streams are read.",
      valueName: "queue"))
  var amqpStreams: [String] = []

  @Option(
    name: .customLong("amqp-source"),
    help: ArgumentHelp(
      "The queue source whose rules map the stream's messages (default: the source consuming that queue, else the only queue source).",
      valueName: "source"))
  var amqpSource: String?

  @Option(
    name: .customLong("amqp-idle"),
    help: ArgumentHelp(
      "A stream is replayed to its end once no message has come for this many seconds.",
      valueName: "seconds"))
  var amqpIdle: Double = 3

  @Argument(
    help: ArgumentHelp(
      "Log files or directories (default: the configured sources).", valueName: "path"))
  var paths: [String] = []

  func run() throws {
    let config = try options.load()
    var o = BackfillOptions()
    o.paths = paths
    o.amqpStreams = amqpStreams
    o.amqpStreamSource = amqpSource
    guard amqpIdle > 0 else { throw ValidationError("--amqp-idle must be more than 0 seconds") }
    o.amqpIdle = amqpIdle
    if amqpSource != nil && amqpStreams.isEmpty {
      throw ValidationError("--amqp-source goes with --amqp-stream")
    }
    o.export = try export.map { text in
      do { return try ExportTarget(parsing: text) } catch {
        throw ValidationError("\(error)")
      }
    }
    o.since = try since.map { try Self.parseTime($0, "--since") }
    o.until = try until.map { try Self.parseTime($0, "--until") }
    o.storePath = noStore ? nil : (store ?? config.storePath)
    o.rejectedPath = rejected ?? config.rejectedPath
    o.keepUnmatched = !countUnmatchedOnly
    o.progress = progress ?? (isatty(STDERR_FILENO) == 1 && !quiet)
    let summary = try reportingErrors {
      try TraceBridge.Backfill(configuration: config, options: o).run()
    }
    if let summaryJson {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      try reportingErrors {
        try encoder.encode(summary).write(to: URL(fileURLWithPath: summaryJson))
      }
    }
    if !quiet { print(SummaryText.render(summary)) }
    for e in summary.readErrors { printError("read error: \(e)") }
    for e in summary.exportErrors { printError("export error: \(e)") }
    if summary.exportFailures > 0 {
      printError("\(summary.exportFailures) spans could not be exported to \(summary.destination)")
      throw ExitCode(3)
    }
    if !summary.readErrors.isEmpty { throw ExitCode(4) }
  }

  static func parseTime(_ text: String, _ option: String) throws -> Int64 {
    let full = text.count == 10 ? text + "T00:00:00Z" : text
    guard let format = try? TimestampFormat(parsing: "iso8601"),
      let ns = format.parse(full, zone: .utc)
    else {
      throw ValidationError(
        "\(option): '\(text)' is not a time; write 2026-11-01 or 2026-11-01T06:00:00Z")
    }
    return ns
  }
}

enum SummaryText {
  static func render(_ s: BackfillSummary) -> String {
    let rate = s.elapsedSeconds > 0 ? Double(s.lines) / s.elapsedSeconds : 0
    var out = String(
      format: "backfill: %d files, %@, %d lines in %.2f s (%@ lines/s)\n", s.files, bytes(s.bytes),
      s.lines,
      s.elapsedSeconds, count(rate))
    let matched = s.matched.values.reduce(0, +)
    out += "  matched    \(matched)"
    if !s.matched.isEmpty {
      out +=
        "  ("
        + s.matched.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
          separator: ", ") + ")"
    }
    out += "\n  unmatched  \(s.unmatched)"
    if let r = s.rejectedFile, s.unmatched + s.rejected.values.reduce(0, +) > 0 {
      out += "  (kept in \(r))"
    }
    if !s.rejected.isEmpty {
      out +=
        "\n  set aside  "
        + s.rejected.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
          separator: ", ")
    }
    if s.cutLines > 0 || s.invalidBytes > 0 {
      out +=
        "\n  repaired   \(s.cutLines) over-long records cut, \(s.invalidBytes) invalid byte sequences replaced"
    }
    out +=
      "\n  orders     \(s.orders) (\(s.ordersComplete) complete, \(s.ordersIncomplete) incomplete)"
    out +=
      "\n  spans      \(s.spans) → \(s.destination): \(s.exportedSpans) exported, \(s.exportFailures) failed, \(s.exportRetries) retries"
    if let store = s.store { out += "\n  store      \(store)" }
    return out
  }

  static func bytes(_ n: Int64) -> String {
    n >= 1 << 20
      ? String(format: "%.1f MiB", Double(n) / 1_048_576)
      : n >= 1024 ? String(format: "%.1f KiB", Double(n) / 1024) : "\(n) B"
  }

  static func count(_ v: Double) -> String {
    v >= 1e6
      ? String(format: "%.2fM", v / 1e6)
      : v >= 1e3 ? String(format: "%.1fk", v / 1e3) : String(format: "%.0f", v)
  }
}
