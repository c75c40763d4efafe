import TraceBridgeCore

/// OTLP protobuf (`opentelemetry/proto/trace/v1/trace.proto`) encoding of spans and requests.
enum OTLPProto {
  /// The `Span` message of one span.
  static func encode(_ span: SpanRecord) -> [UInt8] {
    var w = ProtobufWriter(capacity: 512)
    w.idField(1, span.traceID.high, span.traceID.low)
    w.idField(2, span.spanID.value)
    if let parent = span.parentSpanID { w.idField(4, parent.value) }
    w.string(5, span.name)
    w.uint(6, UInt64(span.kind.rawValue))
    w.fixed64(7, UInt64(bitPattern: span.startUnixNano))
    w.fixed64(8, UInt64(bitPattern: span.endUnixNano))
    for a in span.attributes { keyValue(&w, 9, a) }
    for e in span.events {
      w.message(11, reserve: 1) { w in
        w.fixed64(1, UInt64(bitPattern: e.timeUnixNano))
        w.string(2, e.name)
        for a in e.attributes { keyValue(&w, 3, a) }
      }
    }
    w.uint(12, UInt64(span.droppedEventsCount))
    for l in span.links {
      w.message(13, reserve: 1) { w in
        w.idField(1, l.traceID.high, l.traceID.low)
        w.idField(2, l.spanID.value)
        for a in l.attributes { keyValue(&w, 4, a) }
      }
    }
    if span.status.code != .unset || !span.status.message.isEmpty {
      w.message(15) { w in
        w.string(2, span.status.message)
        w.uint(3, UInt64(span.status.code.rawValue))
      }
    }
    return w.bytes
  }

  static func keyValue(_ w: inout ProtobufWriter, _ field: Int, _ a: Attribute) {
    w.message(field, reserve: 1) { w in
      w.string(1, a.key)
      w.message(2, reserve: 1) { w in
        switch a.value {
        case .string(let s):
          // An empty string is still a set oneof: write the field explicitly.
          if s.isEmpty {
            w.tag(1, 2)
            w.varint(0)
          } else {
            w.string(1, s)
          }
        case .bool(let b): w.bool(2, b)
        case .int(let i): w.int64(3, i)
        case .double(let d): w.double(4, d)
        }
      }
    }
  }

  /// An `ExportTraceServiceRequest` from encoded spans grouped by service, services in the
  /// order given.
  static func request(_ groups: [(service: String, spans: [[UInt8]])], scope: InstrumentationScope)
    -> [UInt8]
  {
    var w = ProtobufWriter(
      capacity: groups.reduce(64) { $0 + $1.spans.reduce(0) { $0 + $1.count + 3 } + 64 })
    for g in groups {
      w.message(1, reserve: 3) { w in
        w.message(1, reserve: 1) { w in
          keyValue(&w, 1, Attribute("service.name", g.service))
        }
        w.message(2, reserve: 3) { w in
          w.message(1, reserve: 1) { w in
            w.string(1, scope.name)
            w.string(2, scope.version)
          }
          for s in g.spans { w.embedded(2, s) }
        }
      }
    }
    return w.bytes
  }
}

/// The instrumentation scope spans are reported under.
public struct InstrumentationScope: Sendable {
  public var name: String
  public var version: String
  public init(name: String, version: String) {
    self.name = name
    self.version = version
  }
  public static let tracebridge = InstrumentationScope(
    name: "tracebridge", version: TraceBridgeVersion.current)
}

public enum TraceBridgeVersion {
  public static let current = "0.1.0"
}
