import AMQPConsumer
import Exporters
import Foundation
import LogParsers
import Logging
import TraceBridgeCore

/// What a backfill run is asked to do.
public struct BackfillOptions: Sendable {
  /// Files and directories; empty: the configured sources' files and their rotated siblings.
  public var paths: [String] = []
  /// Overrides the configuration's exporter.
  public var export: ExportTarget?
  /// Only events at or after / before these times (UTC ns).
  public var since: Int64?
  public var until: Int64?
  /// nil: no store.
  public var storePath: String?
  public var rejectedPath: String?
  public var keepUnmatched = true
  public var progress = false
  /// RabbitMQ stream queues to replay (`--amqp-stream`); with no `paths`, only these are read.
  public var amqpStreams: [String] = []
  /// The queue source whose rules map the streams' messages (default: the source consuming
  /// that queue, else the only queue source).
  public var amqpStreamSource: String?
  /// A stream is at its end when no message came for this long (seconds).
  public var amqpIdle: Double = 3
  public init() {}
}

/// The figures of a run, printed at the end and written with `--summary-json`.
public struct BackfillSummary: Sendable, Codable {
  public var files = 0
  public var bytes: Int64 = 0
  public var lines = 0
  public var records = 0
  public var matched: [String: Int] = [:]
  public var unmatched = 0
  public var rejected: [String: Int] = [:]
  public var invalidBytes = 0
  public var cutLines = 0
  public var events = 0
  public var orders = 0
  public var ordersComplete = 0
  public var ordersIncomplete = 0
  public var spans = 0
  public var exportedSpans = 0
  public var exportFailures = 0
  public var exportRetries = 0
  public var exportErrors: [String] = []
  public var readErrors: [String] = []
  public var destination = ""
  public var store: String?
  public var rejectedFile: String?
  public var elapsedSeconds = 0.0

  enum CodingKeys: String, CodingKey {
    case files, bytes, lines, records, matched, unmatched, rejected, events, orders, spans,
      destination, store
    case invalidBytes = "invalid_bytes"
    case cutLines = "cut_lines"
    case ordersComplete = "orders_complete"
    case ordersIncomplete = "orders_incomplete"
    case exportedSpans = "exported_spans"
    case exportFailures = "export_failures"
    case exportRetries = "export_retries"
    case exportErrors = "export_errors"
    case readErrors = "read_errors"
    case rejectedFile = "rejected_file"
    case elapsedSeconds = "elapsed_seconds"
  }
}

/// Reads archived logs (plain and gzipped, rotated sets in order), builds each order's
/// timeline and exports its spans. Streams: one reader thread per rotated file set, merged by
/// event time, so orders complete and leave memory in time order — memory is bounded by the
/// orders open at one moment, not by the archive's size.
public final class Backfill {
  public let configuration: Configuration
  public let options: BackfillOptions
  private let logger: Logger

  public init(
    configuration: Configuration, options: BackfillOptions,
    logger: Logger = Logger(label: "tracebridge.backfill")
  ) {
    self.configuration = configuration
    self.options = options
    self.logger = logger
  }

  /// The files to read per source, grouped into rotated sets. Errors name files no source claims.
  public func plan() throws -> [(source: SourceDefinition, set: RotatedFileSet)] {
    var bySource: [String: [String]] = [:]
    if options.paths.isEmpty {
      for source in configuration.sources {
        for glob in source.paths {
          bySource[source.name, default: []] += RotatedFileSet.expand(glob: glob)
        }
      }
    } else {
      var unclaimed: [String] = []
      for path in options.paths {
        for file in try RotatedFileSet.listFiles(path) {
          let name = URL(fileURLWithPath: file).lastPathComponent
          let owner = configuration.sources.first { s in
            s.paths.contains {
              RotatedFileSet.belongs(name, to: URL(fileURLWithPath: $0).lastPathComponent)
            }
          }
          if let owner {
            bySource[owner.name, default: []].append(file)
          } else {
            unclaimed.append(file)
          }
        }
      }
      if !unclaimed.isEmpty && bySource.isEmpty {
        throw CLIError(
          "no configured source claims these files: \(unclaimed.prefix(5).joined(separator: ", "))\(unclaimed.count > 5 ? ", …" : ""); add their names to a source's paths in \(configuration.file)",
          exitCode: 2)
      }
      for f in unclaimed {
        logger.warning("no source claims this file; skipped", metadata: ["file": "\(f)"])
      }
    }
    var plan: [(SourceDefinition, RotatedFileSet)] = []
    for source in configuration.sources {
      let files = Array(Set(bySource[source.name] ?? []))
      for set in RotatedFileSet.group(files) { plan.append((source, set)) }
    }
    return plan
  }

  public func run() throws -> BackfillSummary {
    let started = Date()
    var summary = BackfillSummary()
    let plan = options.amqpStreams.isEmpty || !options.paths.isEmpty ? try plan() : []
    let streams = try streamPlan()
    let ruleNames = configuration.rules.map(\.name)
    let rejected = try options.rejectedPath.map { try RejectedWriter(path: $0) }
    summary.rejectedFile = options.rejectedPath
    let target = options.export ?? configuration.exporter.target
    let transport = try makeTransport(target)
    summary.destination = transport.destination
    let batcher = SpanBatcher(
      format: transport.format, maxSpans: configuration.exporter.maxBatchSpans,
      deliver: transport.send)
    let store = try options.storePath.map {
      try StoreWriter(store: StateStore(path: $0), ids: configuration.ids)
    }
    summary.store = options.storePath

    var matched = [Int](repeating: 0, count: ruleNames.count)
    var rejectedCounts: [String: Int] = [:]
    var rejectBuffer: [UInt8] = []
    let correlator = Correlator(
      policy: configuration.orders, ids: configuration.ids, emit: batcher.add,
      reject: { event, reason in
        rejectedCounts[reason.rawValue, default: 0] += 1
        if rejected != nil {
          RejectedWriter.append(to: &rejectBuffer, setAside: event, reason: reason)
        }
      },
      observe: { event, orderID in store?.add(.event(event, orderID: orderID)) },
      closed: { summary in store?.add(.closed(summary)) })

    let bytesRead = AtomicCounter()
    let linesRead = AtomicCounter()
    var producers: [any EventProducer] = plan.map { entry in
      let (rules, indices) = configuration.rules(for: entry.source.name)
      return StreamProducer(
        source: entry.source, files: entry.set.files, rules: rules, ruleIndices: indices,
        allRuleNames: ruleNames,
        rejected: rejected, keepUnmatched: options.keepUnmatched, bytesRead: bytesRead,
        linesRead: linesRead)
    }
    for (queue, source, endpoint) in streams {
      let (rules, indices) = configuration.rules(for: source.name)
      producers.append(
        AMQPStreamProducer(
          source: source, queueName: queue,
          identityQueue: configuration.amqpSources[source.name]?.queue ?? queue, endpoint: endpoint,
          rules: rules, ruleIndices: indices,
          allRuleNames: ruleNames, since: options.since, until: options.until,
          idle: options.amqpIdle,
          rejected: rejected, keepUnmatched: options.keepUnmatched, bytesRead: bytesRead,
          linesRead: linesRead))
    }
    for p in producers { p.start() }
    let progress =
      options.progress
      ? ProgressLine(total: plan.reduce(0) { $0 + $1.set.files.reduce(0) { $0 + Self.size($1) } })
      : nil

    // Merge the streams by event time; each stream is kept positioned on its next event.
    var batches: [[StreamEvent]] = producers.map { _ in [] }
    var positions = [Int](repeating: 0, count: producers.count)
    var live = [Bool](repeating: true, count: producers.count)
    func settle(_ i: Int) {
      while positions[i] == batches[i].count {
        guard let next = producers[i].queue.take() else {
          live[i] = false
          batches[i] = []
          return
        }
        batches[i] = next
        positions[i] = 0
      }
    }
    for i in producers.indices { settle(i) }
    var processed = 0
    var lastTime: Int64 = .min
    while true {
      var best = -1
      var bestTime = Int64.max
      for i in producers.indices where live[i] {
        let t = batches[i][positions[i]].event.timeUnixNano
        if t < bestTime {
          bestTime = t
          best = i
        }
      }
      if best < 0 { break }
      let item = batches[best][positions[best]]
      let event = item.event
      let rule = item.rule
      positions[best] += 1
      settle(best)
      if let since = options.since, event.timeUnixNano < since {
        rejectedCounts[RejectReason.outsideTimeRange.rawValue, default: 0] += 1
        continue
      }
      if let until = options.until, event.timeUnixNano >= until {
        rejectedCounts[RejectReason.outsideTimeRange.rawValue, default: 0] += 1
        continue
      }
      matched[rule] += 1
      correlator.process(event)
      processed += 1
      if event.timeUnixNano > lastTime { lastTime = event.timeUnixNano }
      if processed & 4095 == 0 {
        correlator.advance(to: lastTime)
        if rejectBuffer.count > 1 << 16 { rejected?.write(&rejectBuffer) }
        progress?.update(
          bytes: bytesRead.current, lines: linesRead.current, orders: correlator.statistics.orders,
          spans: correlator.statistics.spans)
      }
    }
    correlator.finish()
    batcher.flush()
    let exportStats = transport.finish()
    rejected?.write(&rejectBuffer)
    try store?.finish()
    progress?.finish()

    for p in producers {
      let r = p.waitForReport()
      summary.files += r.files
      summary.bytes += r.read.bytes
      summary.lines += r.read.lines
      summary.records += r.read.records
      summary.cutLines += r.read.cutRecords
      summary.invalidBytes += r.read.invalidSequences
      summary.readErrors += r.errors
      summary.unmatched += r.unmatched
      for (reason, n) in r.rejected { rejectedCounts[reason.rawValue, default: 0] += n }
    }
    for (i, n) in matched.enumerated() { summary.matched[ruleNames[i]] = n }
    summary.rejected = rejectedCounts
    if let e = rejected?.error { summary.readErrors.append(e) }
    let c = correlator.statistics
    summary.events = c.events
    summary.orders = c.orders
    summary.ordersComplete = c.ordersComplete
    summary.ordersIncomplete = c.ordersIncomplete
    summary.spans = c.spans
    summary.exportedSpans = exportStats.exportedSpans
    summary.exportFailures = exportStats.failedSpans
    summary.exportRetries = exportStats.retries
    summary.exportErrors = exportStats.failures
    summary.elapsedSeconds = Date().timeIntervalSince(started)
    return summary
  }

  /// Each `--amqp-stream` queue with the source whose rules map it and the broker.
  func streamPlan() throws -> [(String, SourceDefinition, AMQPEndpoint)] {
    guard !options.amqpStreams.isEmpty else { return [] }
    let queueSources = configuration.sources.filter { configuration.amqpSources[$0.name] != nil }
    guard !queueSources.isEmpty else {
      throw CLIError(
        "--amqp-stream needs a source with amqp: whose rules map the messages; \(configuration.file) has none",
        exitCode: 2)
    }
    let endpoint = try configuration.amqpEndpoint()
    return try options.amqpStreams.map { queue in
      let source: SourceDefinition
      if let name = options.amqpStreamSource {
        guard let s = queueSources.first(where: { $0.name == name }) else {
          throw CLIError(
            "--amqp-source: no queue source named '\(name)'; queue sources are: \(queueSources.map(\.name).joined(separator: ", "))",
            exitCode: 2)
        }
        source = s
      } else if let s = queueSources.first(where: {
        configuration.amqpSources[$0.name]?.queue == queue
      }) {
        source = s
      } else if queueSources.count == 1 {
        source = queueSources[0]
      } else {
        throw CLIError(
          "--amqp-stream \(queue): no source consumes this queue; say whose rules map it with --amqp-source (one of: \(queueSources.map(\.name).joined(separator: ", ")))",
          exitCode: 2)
      }
      return (queue, source, endpoint)
    }
  }

  func makeTransport(_ target: ExportTarget) throws -> any RequestTransport {
    try configuration.exporter.transport(for: target, appendToFile: false, logger: logger)
  }

  static func size(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value
      ?? 0
  }
}
