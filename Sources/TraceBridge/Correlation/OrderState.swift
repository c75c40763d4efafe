import TraceBridgeCore

/// What the bridge keeps about an open order: just enough to emit each span as soon as it is
/// complete (a transition needs the previous status and its time; a step needs its start),
/// plus the root span's facts. Span events wait here until the span they belong to is emitted,
/// at most `maxEventsPerSpan` of them.
struct OrderState: Codable {
  let orderID: String
  let traceID: TraceID
  let rootSpanID: SpanID
  var firstTime: Int64
  var lastTime: Int64
  var firstService: String
  var userID: String?
  var lastStatus: String?
  var lastStatusTime: Int64 = 0
  var transitions = 0
  var eventCount = 0
  /// Events while the order is in its current status: they go onto the next transition span.
  var currentEvents: [SpanEvent] = []
  var currentDropped: UInt32 = 0
  /// Events for the root span (before the first status, the first status, after the final one).
  var rootEvents: [SpanEvent] = []
  var rootDropped: UInt32 = 0
  var openSteps: [String: OpenStep] = [:]
  /// Set when the order reached a final status.
  var finalTime: Int64?
  var aliases: [AliasKey] = []

  struct OpenStep: Codable {
    var start: Int64
    var service: String
    var attributes: [Attribute]
  }
}

/// What is left of a closed order, so that late events are recognised (and set aside) rather
/// than starting a second root span with the same id.
struct ClosedOrder: Codable {
  var closedAt: Int64
  var aliases: [AliasKey]
}
