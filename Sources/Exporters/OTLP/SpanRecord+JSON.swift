import TraceBridgeCore

/// OTLP JSON encoding (the OTLP/HTTP JSON mapping, as the Collector's file exporter writes it):
/// camelCase keys, enums as numbers, 64-bit integers as strings, and trace/span ids as
/// lower-case hex — the OTLP spec's exception to the protobuf JSON mapping; never base64,
/// which the Collector and Jaeger reject.
enum OTLPJSON {
  static func encode(_ span: SpanRecord) -> [UInt8] {
    var o = JSONWriter(capacity: 512)
    o.raw("{")
    ids(&o, span.traceID, span.spanID)
    if let parent = span.parentSpanID {
      o.raw(",\"parentSpanId\":\"")
      Hex.append(parent.value, to: &o.bytes)
      o.raw("\"")
    }
    o.raw(",\"name\":")
    o.string(span.name)
    o.raw(",\"kind\":")
    o.int(Int64(span.kind.rawValue))
    o.raw(",\"startTimeUnixNano\":\"")
    o.int(span.startUnixNano)
    o.raw("\",\"endTimeUnixNano\":\"")
    o.int(span.endUnixNano)
    o.raw("\"")
    attributes(&o, span.attributes)
    if !span.events.isEmpty {
      o.raw(",\"events\":[")
      for (i, e) in span.events.enumerated() {
        if i > 0 { o.raw(",") }
        o.raw("{\"timeUnixNano\":\"")
        o.int(e.timeUnixNano)
        o.raw("\",\"name\":")
        o.string(e.name)
        attributes(&o, e.attributes)
        o.raw("}")
      }
      o.raw("]")
    }
    if span.droppedEventsCount > 0 {
      o.raw(",\"droppedEventsCount\":")
      o.int(Int64(span.droppedEventsCount))
    }
    if !span.links.isEmpty {
      o.raw(",\"links\":[")
      for (i, l) in span.links.enumerated() {
        if i > 0 { o.raw(",") }
        o.raw("{")
        ids(&o, l.traceID, l.spanID)
        attributes(&o, l.attributes)
        o.raw("}")
      }
      o.raw("]")
    }
    o.raw(",\"status\":{")
    if span.status.code != .unset {
      o.raw("\"code\":")
      o.int(Int64(span.status.code.rawValue))
    }
    if !span.status.message.isEmpty {
      if span.status.code != .unset { o.raw(",") }
      o.raw("\"message\":")
      o.string(span.status.message)
    }
    o.raw("}}")
    return o.bytes
  }

  /// `"traceId":"<32 hex>","spanId":"<16 hex>"`, the members a span and a link begin with.
  static func ids(_ o: inout JSONWriter, _ trace: TraceID, _ span: SpanID) {
    o.raw("\"traceId\":\"")
    Hex.append(trace.high, to: &o.bytes)
    Hex.append(trace.low, to: &o.bytes)
    o.raw("\",\"spanId\":\"")
    Hex.append(span.value, to: &o.bytes)
    o.raw("\"")
  }

  static func attributes(_ o: inout JSONWriter, _ attributes: [Attribute]) {
    guard !attributes.isEmpty else { return }
    o.raw(",\"attributes\":[")
    for (i, a) in attributes.enumerated() {
      if i > 0 { o.raw(",") }
      keyValue(&o, a)
    }
    o.raw("]")
  }

  static func keyValue(_ o: inout JSONWriter, _ a: Attribute) {
    o.raw("{\"key\":")
    o.string(a.key)
    o.raw(",\"value\":{")
    switch a.value {
    case .string(let s):
      o.raw("\"stringValue\":")
      o.string(s)
    case .bool(let b): o.raw(b ? "\"boolValue\":true" : "\"boolValue\":false")
    case .int(let i):
      o.raw("\"intValue\":\"")
      o.int(i)
      o.raw("\"")
    case .double(let d):
      o.raw("\"doubleValue\":")
      o.raw(d.isFinite ? "\(d)" : "0")
    }
    o.raw("}}")
  }

  static func request(_ groups: [(service: String, spans: [[UInt8]])], scope: InstrumentationScope)
    -> [UInt8]
  {
    var o = JSONWriter(
      capacity: groups.reduce(64) { $0 + $1.spans.reduce(0) { $0 + $1.count + 1 } + 200 })
    o.raw("{\"resourceSpans\":[")
    for (gi, g) in groups.enumerated() {
      if gi > 0 { o.raw(",") }
      o.raw("{\"resource\":{\"attributes\":[")
      keyValue(&o, Attribute("service.name", g.service))
      o.raw("]},\"scopeSpans\":[{\"scope\":{\"name\":")
      o.string(scope.name)
      o.raw(",\"version\":")
      o.string(scope.version)
      o.raw("},\"spans\":[")
      for (i, s) in g.spans.enumerated() {
        if i > 0 { o.raw(",") }
        o.bytes.append(contentsOf: s)
      }
      o.raw("]}]}")
    }
    o.raw("]}")
    return o.bytes
  }
}

/// Appends JSON tokens to a byte buffer.
struct JSONWriter {
  var bytes: [UInt8] = []
  init(capacity: Int) { bytes.reserveCapacity(capacity) }

  @inline(__always) mutating func raw(_ s: StaticString) {
    s.withUTF8Buffer { bytes.append(contentsOf: $0) }
  }

  mutating func raw(_ s: String) { bytes.append(contentsOf: s.utf8) }

  mutating func int(_ v: Int64) {
    if v == 0 {
      bytes.append(0x30)
      return
    }
    var digits:
      (
        UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
        UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
      ) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var n = v.magnitude
    var count = 0
    withUnsafeMutableBytes(of: &digits) { d in
      while n > 0 {
        d[count] = UInt8(n % 10) + 0x30
        n /= 10
        count += 1
      }
      if v < 0 { bytes.append(0x2D) }
      for i in stride(from: count - 1, through: 0, by: -1) { bytes.append(d[i]) }
    }
  }

  /// A JSON string literal with the escapes RFC 8259 requires.
  mutating func string(_ s: String) {
    bytes.append(0x22)
    var s = s
    s.withUTF8 { buf in
      var runStart = 0
      for i in 0..<buf.count {
        let c = buf[i]
        if c >= 0x20 && c != 0x22 && c != 0x5C { continue }
        if i > runStart {
          bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart..<i]))
        }
        runStart = i + 1
        switch c {
        case 0x22: raw("\\\"")
        case 0x5C: raw("\\\\")
        case 0x0A: raw("\\n")
        case 0x0D: raw("\\r")
        case 0x09: raw("\\t")
        default:
          raw("\\u00")
          bytes.append(Self.hex[Int(c >> 4)])
          bytes.append(Self.hex[Int(c & 0xF)])
        }
      }
      if runStart < buf.count {
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart...]))
      }
    }
    bytes.append(0x22)
  }

  static let hex: [UInt8] = Array("0123456789abcdef".utf8)
}
