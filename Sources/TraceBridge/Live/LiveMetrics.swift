import Foundation
import LogParsers
import Prometheus

/// The figures `tracebridge run` exposes on /metrics (Prometheus text format), all prefixed
/// `tracebridge_`. docs/operations.md lists them with what to alert on. Thread-safe: the
/// pipeline, the sender and the HTTP server use it at once.
public final class LiveMetrics: Sendable {
  public let registry = PrometheusCollectorRegistry()
  private let cache = Cache()

  // Totals without labels.
  let events: Counter
  let openOrders: Gauge
  let spoolSpans: Gauge
  let spoolBytes: Gauge
  let spoolOldestAge: Gauge
  let spoolFull: Gauge
  let exportSpans: Counter
  let exportRetries: Counter
  let exportFailures: Counter
  let spoolLatency: ValueHistogram
  let messageLatency: ValueHistogram

  public init() {
    events = registry.makeCounter(
      descriptor: .init(
        metricName: "tracebridge_events_total", unitName: "",
        helpText: "Order events read and sent to correlation"))
    openOrders = registry.makeGauge(
      descriptor: .init(
        metricName: "tracebridge_open_orders", unitName: "",
        helpText: "Orders seen whose root span was not sent yet"))
    spoolSpans = registry.makeGauge(
      descriptor: .init(
        metricName: "tracebridge_spool_spans", unitName: "",
        helpText: "Spans in the durable spool, not yet exported"))
    spoolBytes = registry.makeGauge(
      descriptor: .init(
        metricName: "tracebridge_spool_bytes", unitName: "", helpText: "Bytes of spans in the spool"
      ))
    spoolOldestAge = registry.makeGauge(
      descriptor: .init(
        metricName: "tracebridge_spool_oldest_span_age_seconds", unitName: "",
        helpText: "Age of the oldest span waiting in the spool"))
    spoolFull = registry.makeGauge(
      descriptor: .init(
        metricName: "tracebridge_spool_full", unitName: "",
        helpText: "1 while the spool is at spool.max_bytes and reading is paused"))
    exportSpans = registry.makeCounter(
      descriptor: .init(
        metricName: "tracebridge_export_spans_total", unitName: "",
        helpText: "Spans the exporter accepted"))
    exportRetries = registry.makeCounter(
      descriptor: .init(
        metricName: "tracebridge_export_retries_total", unitName: "",
        helpText: "Export requests retried (429/502/503/504, connection errors)"))
    exportFailures = registry.makeCounter(
      descriptor: .init(
        metricName: "tracebridge_export_failures_total", unitName: "",
        helpText:
          "Export requests refused for good (kept in export-refused/ under the data directory)"))
    spoolLatency = registry.makeValueHistogram(
      descriptor: .init(
        metricName: "tracebridge_read_to_spool_seconds", unitName: "",
        helpText: "From a line being read to its event's spans being committed to the spool"),
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30])
    messageLatency = registry.makeValueHistogram(
      descriptor: .init(
        metricName: "tracebridge_amqp_message_to_spool_seconds", unitName: "",
        helpText:
          "From a message's event time (its timestamp) to its spans being committed to the spool"),
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60])
  }

  public func render() -> [UInt8] { registry.emitToBuffer() }

  func counter(_ name: String, _ labels: [(String, String)], help: String) -> Counter {
    let key = name + labels.map { "\u{1}\($0.0)=\($0.1)" }.joined()
    return cache.counter(key) {
      registry.makeCounter(
        descriptor: .init(metricName: name, unitName: "", helpText: help), labels: labels)
    }
  }

  func gauge(_ name: String, _ labels: [(String, String)], help: String) -> Gauge {
    let key = name + labels.map { "\u{1}\($0.0)=\($0.1)" }.joined()
    return cache.gauge(key) {
      registry.makeGauge(
        descriptor: .init(metricName: name, unitName: "", helpText: help), labels: labels)
    }
  }

  func forgetGauge(_ name: String, _ labels: [(String, String)]) {
    let key = name + labels.map { "\u{1}\($0.0)=\($0.1)" }.joined()
    if let g = cache.removeGauge(key) { registry.unregisterGauge(g) }
  }

  // Labelled metrics.
  func linesRead(_ source: String) -> Counter {
    counter(
      "tracebridge_lines_read_total", [("source", source)],
      help: "Lines read from the source's files")
  }
  func linesCut(_ source: String) -> Counter {
    counter(
      "tracebridge_lines_cut_total", [("source", source)],
      help: "Records cut at the source's max_line_bytes")
  }
  func unmatched(_ source: String) -> Counter {
    counter(
      "tracebridge_unmatched_lines_total", [("source", source)], help: "Records no rule matched")
  }
  func ruleMatches(_ rule: String) -> Counter {
    counter(
      "tracebridge_rule_matches_total", [("rule", rule)],
      help: "Records the rule turned into an event")
  }
  func rejected(_ reason: String) -> Counter {
    counter(
      "tracebridge_rejected_total", [("reason", reason)],
      help: "Records and events set aside, by reason")
  }
  func filesRotated(_ source: String) -> Counter {
    counter(
      "tracebridge_files_rotated_total", [("source", source)],
      help: "Files seen renamed away or deleted")
  }
  func filesTruncated(_ source: String) -> Counter {
    counter(
      "tracebridge_files_truncated_total", [("source", source)],
      help: "Files seen truncated in place")
  }
  func amqpReceived(_ source: String) -> Counter {
    counter(
      "tracebridge_amqp_messages_received_total", [("source", source)],
      help: "Messages delivered by RabbitMQ")
  }
  func amqpAcked(_ source: String) -> Counter {
    counter(
      "tracebridge_amqp_messages_acked_total", [("source", source)],
      help: "Messages acknowledged (their spans committed, or dead-lettered)")
  }
  func amqpConnected(_ source: String) -> Gauge {
    gauge(
      "tracebridge_amqp_connected", [("source", source)],
      help: "1 while the source's queue is being consumed, 0 while connecting or reconnecting")
  }
  func amqpFormat(_ source: String, _ format: BodyFormat) -> Counter {
    counter(
      "tracebridge_amqp_messages_mapped_total", [("source", source), ("format", format.rawValue)],
      help: "Messages a rule mapped to an event, by the body's format (json, xml, text)")
  }
  func invalidBytes(_ source: String) -> Counter {
    counter(
      "tracebridge_amqp_invalid_bytes_total", [("source", source)],
      help: "Invalid byte sequences in message bodies, replaced by U+FFFD when decoding")
  }
  func amqpDeadLettered(_ source: String) -> Counter {
    counter(
      "tracebridge_amqp_messages_dead_lettered_total", [("source", source)],
      help: "Messages no rule could map, published to the dead-letter queue with the reason")
  }
  func amqpReconnects(_ source: String) -> Counter {
    counter(
      "tracebridge_amqp_reconnects_total", [("source", source)],
      help: "Connections to RabbitMQ lost and retried")
  }
  func amqpDuplicates(_ source: String) -> Counter {
    counter(
      "tracebridge_amqp_duplicates_total", [("source", source)],
      help:
        "Redelivered or re-sent messages whose events were already committed (acknowledged, not processed again)"
    )
  }
  func fileBytesRead(_ source: String, _ path: String) -> Counter {
    counter(
      "tracebridge_file_bytes_read_total", [("source", source), ("path", path)],
      help: "Bytes read from the file (decompressed)")
  }
  func fileBytesBehind(_ source: String, _ path: String) -> Gauge {
    gauge(
      "tracebridge_file_bytes_behind", [("source", source), ("path", path)],
      help: "Bytes of the file not read yet")
  }
  func fileCheckpointAge(_ source: String, _ path: String) -> Gauge {
    gauge(
      "tracebridge_file_checkpoint_age_seconds", [("source", source), ("path", path)],
      help: "Seconds since the file's checkpoint last advanced")
  }

  /// Handles by name and labels (the registry hands out one per combination, but asking it
  /// takes a lock and allocations; the hot path asks this cache).
  private final class Cache: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]
    func counter(_ key: String, _ make: () -> Counter) -> Counter {
      lock.lock()
      defer { lock.unlock() }
      if let c = counters[key] { return c }
      let c = make()
      counters[key] = c
      return c
    }
    func gauge(_ key: String, _ make: () -> Gauge) -> Gauge {
      lock.lock()
      defer { lock.unlock() }
      if let g = gauges[key] { return g }
      let g = make()
      gauges[key] = g
      return g
    }
    func removeGauge(_ key: String) -> Gauge? {
      lock.lock()
      defer { lock.unlock() }
      return gauges.removeValue(forKey: key)
    }
  }
}
