import TraceBridgeCore

/// Delivers encoded requests somewhere. `send` may block (backpressure) but never drops:
/// a request it cannot deliver is counted as failed with its reason.
public protocol RequestTransport: AnyObject {
  var format: ExportFormat { get }
  /// A human description of the destination (`http://…`, `file:…`).
  var destination: String { get }
  func send(_ request: EncodedRequest)
  /// Waits until every request sent so far is delivered or has failed; then reports.
  func finish() -> ExportStatistics
  /// Delivers one request before returning, retrying retryable failures without a time limit
  /// until `stop` says so (live mode: the spool keeps the spans meanwhile).
  func deliver(_ request: EncodedRequest, stop: () -> Bool) -> DeliveryOutcome
  /// The counts so far; safe to read from any thread while another one delivers.
  var currentStatistics: ExportStatistics { get }
}

/// How a synchronous delivery ended.
public enum DeliveryOutcome: Sendable, Equatable {
  case delivered
  /// Refused for good (a 4xx other than 429, a write error): retrying would not help.
  case failed(String)
  /// `stop` interrupted the retries; nothing is known to be delivered.
  case stopped
}

/// What an export did.
public struct ExportStatistics: Sendable, Equatable {
  public var requests = 0
  public var exportedSpans = 0
  public var failedSpans = 0
  public var failedRequests = 0
  public var retries = 0
  /// The first few failure reasons, for the summary.
  public var failures: [String] = []
  public init() {}

  mutating func recordFailure(_ reason: String, spans: Int) {
    failedRequests += 1
    failedSpans += spans
    if failures.count < 10 { failures.append(reason) }
  }
}

/// Where spans go, as `--export` or the configuration name it.
public enum ExportTarget: Sendable, Equatable, CustomStringConvertible {
  case http(String)
  case file(String)
  case discard

  /// Parses `http(s)://…`, `file:PATH` or `discard`.
  public init(parsing text: String) throws(ExportTargetError) {
    if text == "discard" {
      self = .discard
    } else if text.hasPrefix("file:") {
      let path = String(text.dropFirst(5))
      guard !path.isEmpty else { throw .invalid(text) }
      self = .file(path)
    } else if text.hasPrefix("http://") || text.hasPrefix("https://") {
      self = .http(text)
    } else {
      throw .invalid(text)
    }
  }

  public var description: String {
    switch self {
    case .http(let url): return url
    case .file(let path): return "file:\(path)"
    case .discard: return "discard"
    }
  }
}

public enum ExportTargetError: Error, CustomStringConvertible {
  case invalid(String)
  public var description: String {
    switch self {
    case .invalid(let text):
      return
        "'\(text)' is not an export target; use http://host:4318/v1/traces, https://…, file:PATH or discard"
    }
  }
}

/// Counts and forgets: for measuring everything but the transport.
public final class DiscardTransport: RequestTransport {
  public let format: ExportFormat
  public var destination: String { "discard" }
  private var stats = ExportStatistics()
  public init(format: ExportFormat = .protobuf) { self.format = format }
  public func send(_ request: EncodedRequest) {
    stats.requests += 1
    stats.exportedSpans += request.spanCount
  }
  public func finish() -> ExportStatistics { stats }
  public func deliver(_ request: EncodedRequest, stop: () -> Bool) -> DeliveryOutcome {
    send(request)
    return .delivered
  }
  public var currentStatistics: ExportStatistics { ExportStatistics() }
}
