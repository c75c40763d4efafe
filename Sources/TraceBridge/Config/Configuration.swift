import Exporters
import LogParsers
import Logging
import TraceBridgeCore

/// The validated configuration: sources and rules compiled, paths absolute, the secret read.
public struct Configuration: Sendable {
  /// The file it was read from.
  public var file: String
  public var namespace: String
  public var secret: [UInt8]
  public var dataDirectory: String
  public var storePath: String
  public var rejectedPath: String
  public var orders: OrderPolicy
  public var sources: [SourceDefinition]
  public var rules: [CompiledRule]
  public var exporter: ExporterConfiguration
  public var live = LiveConfiguration()
  /// Sources that consume a RabbitMQ queue (their `paths` are empty), by source name.
  public var amqpSources: [String: AMQPSourceSettings] = [:]
  /// The broker connection, when any source reads a queue.
  public var amqp: AMQPConnectionSettings?

  public var ids: IDDeriver { IDDeriver(secret: secret, namespace: namespace) }

  /// The rules of `source`, in the order written, with their indices in `rules`.
  public func rules(for source: String) -> (rules: [CompiledRule], indices: [Int]) {
    let indices = rules.indices.filter { rules[$0].sources.contains(source) }
    return (indices.map { rules[$0] }, indices)
  }

  public func source(named name: String) -> SourceDefinition? {
    sources.first { $0.name == name }
  }
}

/// The order life cycle. Durations in nanoseconds of event time.
public struct OrderPolicy: Sendable {
  public var finalStatuses: Set<String> = ["DELIVERED", "CANCELLED"]
  public var horizon: Int64 = 72 * 3600 * 1_000_000_000
  public var finalGrace: Int64 = 600 * 1_000_000_000
  public var aliasTTL: Int64 = 3600 * 1_000_000_000
  public var maxPendingAliases = 100_000
  /// Span events kept on one span; more are counted as dropped.
  public var maxEventsPerSpan = 128
  public init() {}
}

/// How `tracebridge run` tails, orders, commits and spools. Durations in seconds.
public struct LiveConfiguration: Sendable {
  /// Where /healthz, /readyz and /metrics are served.
  public var listen = "127.0.0.1:9464"
  public var pollInterval = 0.2
  /// Events are held this long after they are read and released in event-time order.
  public var reorderWindow = 2.0
  /// A multiline record waiting for its next line is emitted after this long without growth.
  public var multilineFlush = 1.0
  /// At most this long between two commits of spans, checkpoints and order state.
  public var commitInterval = 0.2
  /// A file rotated away or deleted is closed after this long without growth.
  public var rotatedQuietPeriod = 5.0
  /// Files of a source never tailed before start at their end instead of their beginning.
  public var startAtEnd = false
  /// The ingest threads' scheduling policy (`batch`: Linux `SCHED_BATCH`; `normal`: as started).
  public var cpuScheduling = CPUScheduling.batch
  /// The spool's bound: when this many bytes of spans wait, reading pauses.
  public var spoolMaxBytes: Int64 = 1 << 30
  public init() {}
}

/// Where spans go and how.
public struct ExporterConfiguration: Sendable {
  public var target: ExportTarget
  public var gzip = false
  public var headers: [(String, String)] = []
  public var timeout: Double = 10
  public var retry = RetryPolicy()
  public var maxBatchSpans = 2048
  public init(target: ExportTarget) { self.target = target }
}

/// One problem in a configuration file, with the line it is on.
public struct ConfigurationIssue: Sendable, CustomStringConvertible, Equatable {
  public var file: String
  public var line: Int?
  public var message: String
  public var description: String {
    if let line { return "\(file):\(line): \(message)" }
    return "\(file): \(message)"
  }
}

/// Every problem found in a configuration file; the loader reports them all at once.
public struct ConfigurationError: Error, CustomStringConvertible {
  public var issues: [ConfigurationIssue]
  public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// A source's queue: what to consume and where poison messages go.
public struct AMQPSourceSettings: Sendable {
  public var queue: String
  /// Only check that the queue exists (queues the services own) instead of declaring it.
  public var passive = false
  public var bindings: [(exchange: String, routingKey: String)] = []
  public var prefetch = 5000
  /// Where a message no rule can map goes, with the reason in the `x-tracebridge-reason`
  /// header. Default: the default exchange with routing key `<queue>.dead` (a durable queue
  /// of that name is declared).
  public var deadLetterExchange = ""
  public var deadLetterRoutingKey: String?
  /// Larger messages are dead-lettered unread.
  public var maxMessageBytes = 1 << 20
  public init(queue: String) { self.queue = queue }
  public var deadLetterQueue: String { deadLetterRoutingKey ?? "\(queue).dead" }
}

/// The broker connection of `amqp:`. Credentials from the environment or a file override the
/// URL's, so that no password needs to be on a command line or in the configuration.
public struct AMQPConnectionSettings: Sendable {
  public var url = "amqp://127.0.0.1:5672/%2F"
  public var user: String?
  public var password: String?
  public var heartbeatSeconds = 30
  public var caFile: String?
  public var certFile: String?
  public var keyFile: String?
  public init() {}
}

extension ExporterConfiguration {
  /// The transport for `target` with these settings; `appendToFile`: a file target is appended
  /// to (live mode) rather than written anew (backfill).
  func transport(for target: ExportTarget, appendToFile: Bool, logger: Logger) throws
    -> any RequestTransport
  {
    switch target {
    case .discard: return DiscardTransport()
    case .file(let path): return try FileTransport(path: path, append: appendToFile)
    case .http(let url):
      var o = OTLPHTTPTransport.Options()
      o.gzip = gzip
      o.headers = headers
      o.timeout = timeout
      o.retry = retry
      return try OTLPHTTPTransport(url: url, options: o, logger: logger)
    }
  }
}
