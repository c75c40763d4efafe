import TraceBridgeCore

/// The wire format of a request.
public enum ExportFormat: Sendable {
  /// OTLP/HTTP protobuf (`application/x-protobuf`).
  case protobuf
  /// OTLP JSON, hex ids.
  case json
}

/// One encoded `ExportTraceServiceRequest`.
public struct EncodedRequest: Sendable {
  public var bytes: [UInt8]
  public var spanCount: Int
  public init(bytes: [UInt8], spanCount: Int) {
    self.bytes = bytes
    self.spanCount = spanCount
  }
}

/// Encodes spans as they come and cuts them into requests of at most `maxSpans` spans and
/// `maxBytes` bytes (OTLP receivers commonly refuse bodies over 4 MiB), grouped by service
/// (one `ResourceSpans` per `service.name`, services in name order, spans in arrival order),
/// so the same spans in the same order always give the same requests. Used by one thread.
public final class SpanBatcher {
  public let format: ExportFormat
  private let maxSpans: Int
  private let maxBytes: Int
  private let scope: InstrumentationScope
  private let deliver: (EncodedRequest) -> Void
  private var groups: [String: [[UInt8]]] = [:]
  private var count = 0
  private var bytes = 0

  public init(
    format: ExportFormat, maxSpans: Int = 2048, maxBytes: Int = 3 << 20,
    scope: InstrumentationScope = .tracebridge, deliver: @escaping (EncodedRequest) -> Void
  ) {
    self.format = format
    self.maxSpans = max(1, maxSpans)
    self.maxBytes = maxBytes
    self.scope = scope
    self.deliver = deliver
  }

  public func add(_ span: SpanRecord) {
    add(encoded: Self.encode(span, format: format), service: span.service)
  }

  /// One span in `format`'s encoding, as ``add(encoded:service:)`` takes it (the live spool
  /// keeps spans encoded, so that sending them needs no decoding).
  public static func encode(_ span: SpanRecord, format: ExportFormat) -> [UInt8] {
    format == .protobuf ? OTLPProto.encode(span) : OTLPJSON.encode(span)
  }

  /// Adds a span already encoded with ``encode(_:format:)`` in this batcher's format.
  public func add(encoded: [UInt8], service: String) {
    var cost = encoded.count + 8 + groupCost(service)
    if count > 0 && bytes + cost + 256 > maxBytes {
      flush()
      cost = encoded.count + 8 + groupCost(service)
    }
    groups[service, default: []].append(encoded)
    count += 1
    bytes += cost
    if count >= maxSpans { flush() }
  }

  /// What a new service adds to the request besides its spans: a `ResourceSpans` with the
  /// resource's `service.name` and the scope (an upper bound; 0 when the service has spans already).
  private func groupCost(_ service: String) -> Int {
    guard groups[service] == nil else { return 0 }
    return (format == .protobuf ? 128 : 256) + 2 * service.utf8.count
  }

  /// Sends what is buffered as one request.
  public func flush() {
    guard count > 0 else { return }
    let ordered = groups.keys.sorted().map { (service: $0, spans: groups[$0]!) }
    let body =
      format == .protobuf
      ? OTLPProto.request(ordered, scope: scope) : OTLPJSON.request(ordered, scope: scope)
    let request = EncodedRequest(bytes: body, spanCount: count)
    groups.removeAll(keepingCapacity: true)
    count = 0
    bytes = 0
    deliver(request)
  }

  /// Encodes spans into one request without batching state (tests, tools).
  public static func encodeRequest(
    _ spans: [SpanRecord], format: ExportFormat, scope: InstrumentationScope = .tracebridge
  ) -> [UInt8] {
    var result: [UInt8] = []
    let batcher = SpanBatcher(format: format, maxSpans: Int.max, maxBytes: Int.max, scope: scope) {
      result = $0.bytes
    }
    spans.forEach(batcher.add)
    batcher.flush()
    return result
  }
}
