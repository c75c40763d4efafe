/// A finished span, ready to encode. Ids and times are set by the caller (the synthesizer),
/// which is why TraceBridge encodes OTLP itself instead of going through an OTel SDK.
public struct SpanRecord: Sendable, Equatable, Codable {
  public var traceID: TraceID
  public var spanID: SpanID
  public var parentSpanID: SpanID?
  public var name: String
  public var kind: SpanKind
  /// UTC nanoseconds since the Unix epoch.
  public var startUnixNano: Int64
  public var endUnixNano: Int64
  public var attributes: [Attribute]
  public var events: [SpanEvent]
  public var droppedEventsCount: UInt32
  public var links: [SpanLink]
  public var status: SpanStatus
  /// `service.name` of the resource the span belongs to: the real system (Shop, CRM, MES).
  public var service: String

  public init(
    traceID: TraceID, spanID: SpanID, parentSpanID: SpanID?, name: String, kind: SpanKind,
    startUnixNano: Int64, endUnixNano: Int64, attributes: [Attribute] = [],
    events: [SpanEvent] = [], droppedEventsCount: UInt32 = 0, links: [SpanLink] = [],
    status: SpanStatus = .unset, service: String
  ) {
    self.traceID = traceID
    self.spanID = spanID
    self.parentSpanID = parentSpanID
    self.name = name
    self.kind = kind
    self.startUnixNano = startUnixNano
    self.endUnixNano = endUnixNano
    self.attributes = attributes
    self.events = events
    self.droppedEventsCount = droppedEventsCount
    self.links = links
    self.status = status
    self.service = service
  }
}

/// OTLP `Span.SpanKind` values.
public enum SpanKind: Int, Sendable, Codable {
  case unspecified = 0
  case `internal` = 1
  case server = 2
  case client = 3
  case producer = 4
  case consumer = 5
}

/// A timestamped annotation on a span: a log line that is not a transition.
public struct SpanEvent: Sendable, Equatable, Codable {
  public var timeUnixNano: Int64
  public var name: String
  public var attributes: [Attribute]
  public init(timeUnixNano: Int64, name: String, attributes: [Attribute] = []) {
    self.timeUnixNano = timeUnixNano
    self.name = name
    self.attributes = attributes
  }
}

/// A link to a span of another trace (an upstream `traceparent`).
public struct SpanLink: Sendable, Equatable, Codable {
  public var traceID: TraceID
  public var spanID: SpanID
  public var attributes: [Attribute]
  public init(traceID: TraceID, spanID: SpanID, attributes: [Attribute] = []) {
    self.traceID = traceID
    self.spanID = spanID
    self.attributes = attributes
  }
}

/// OTLP `Status`.
public struct SpanStatus: Sendable, Equatable, Codable {
  public enum Code: Int, Sendable, Codable {
    case unset = 0
    case ok = 1
    case error = 2
  }
  public var code: Code
  public var message: String
  public init(code: Code, message: String = "") {
    self.code = code
    self.message = message
  }
  public static let unset = SpanStatus(code: .unset)
}
