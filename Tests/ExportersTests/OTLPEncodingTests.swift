import Foundation
import TraceBridgeCore
import XCTest

@testable import Exporters

/// Checks the OTLP encoders against golden files made with the official protobuf definitions
/// (`scripts/make_otlp_fixtures.py`, PyPI `opentelemetry-proto`): the protobuf request must
/// equal Python's deterministic serialization byte for byte; the JSON request must parse to
/// the same object as `json_format.MessageToDict` with hex ids.
///
/// One semantic difference is allowed and normalised away: our JSON always writes `status`,
/// as `{}` when it is unset; `MessageToDict` leaves an unset status out.
final class OTLPEncodingTests: XCTestCase {
  private static let fixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/otlp")

  // MARK: - Golden files

  func testProtobufRequestEqualsOfficialDeterministicSerialization() throws {
    for name in ["request", "large_request"] {
      let spans = try Self.spans(name)
      let expected = try Self.fixture("\(name).pb")
      let actual = SpanBatcher.encodeRequest(spans, format: .protobuf)
      XCTAssertEqual(actual.count, expected.count, "\(name): length")
      if let i = zip(actual, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?
        .offset
      {
        XCTFail(
          "\(name): first difference at byte \(i): ours \(Self.hex(actual[i..<min(i + 16, actual.count)]))"
            + " official \(Self.hex(expected[i..<min(i + 16, expected.count)]))")
      }
    }
  }

  func testJSONRequestParsesToTheOfficialJSONMappingWithHexIDs() throws {
    for name in ["request", "large_request"] {
      let spans = try Self.spans(name)
      let actual = try JSONValue(parsing: SpanBatcher.encodeRequest(spans, format: .json))
      let expected = try JSONValue(parsing: Self.fixture("\(name).json"))
      XCTAssertEqual(actual.droppingEmptyStatus, expected, name)
      XCTAssertNotEqual(actual, .null)
    }
  }

  func testJSONIDsAreLowerCaseHexAndInt64ValuesAreStrings() throws {
    let spans = try Self.spans("request")
    let text = String(decoding: SpanBatcher.encodeRequest(spans, format: .json), as: UTF8.self)
    XCTAssertTrue(text.contains(#""traceId":"99b73e160bf8e396404e6f5eed6e0a51""#))
    XCTAssertTrue(text.contains(#""parentSpanId":"7560ba59c2dad063""#))
    XCTAssertTrue(text.contains(#""intValue":"9223372036854775807""#))
    XCTAssertTrue(text.contains(#""startTimeUnixNano":"1774742398123456789""#))
    XCTAssertTrue(text.contains(#""kind":4"#))
  }

  func testJSONEscapesQuotesBackslashesAndControlCharacters() throws {
    let name = "a\"b\\c\nd\te\u{01}f → ж"
    let span = SpanRecord(
      traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), parentSpanID: nil, name: name,
      kind: .internal,
      startUnixNano: 1, endUnixNano: 2, service: "Shop")
    let object =
      try JSONSerialization.jsonObject(with: Data(OTLPJSON.encode(span))) as? [String: Any]
    XCTAssertEqual(object?["name"] as? String, name)
  }

  func testEmptyStringAttributeIsEncodedAsSetStringValue() {
    // AnyValue{string_value: ""}: field 1 present with length 0, so receivers see a string, not an empty AnyValue.
    var w = ProtobufWriter()
    OTLPProto.keyValue(&w, 9, Attribute("k", ""))
    XCTAssertEqual(w.bytes, [0x4a, 0x07, 0x0a, 0x01, 0x6b, 0x12, 0x02, 0x0a, 0x00])
  }

  // MARK: - ProtobufWriter

  func testVarintsAreMinimal() {
    let cases: [(UInt64, [UInt8])] = [
      (0, [0x00]), (1, [0x01]), (127, [0x7f]), (128, [0x80, 0x01]), (300, [0xac, 0x02]),
      (16383, [0xff, 0x7f]), (16384, [0x80, 0x80, 0x01]),
      (UInt64.max, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    ]
    for (value, expected) in cases {
      var w = ProtobufWriter()
      w.varint(value)
      XCTAssertEqual(w.bytes, expected, "\(value)")
      XCTAssertEqual(ProtobufWriter.varintSize(value), expected.count, "\(value)")
    }
  }

  func testNegativeInt64IsTenByteTwosComplementVarint() {
    var w = ProtobufWriter()
    w.int64(3, -1)
    XCTAssertEqual(w.bytes, [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
  }

  /// A sub-message's length is reserved before its body is written; the reservation must grow
  /// (and the body move) when the body is longer than the reservation can say, and shrink when
  /// it is shorter.
  func testSubMessageLengthPrefixIsMinimalWhateverWasReserved() {
    let cases: [(length: Int, prefix: [UInt8])] = [
      (0, [0x00]), (1, [0x01]), (127, [0x7f]), (128, [0x80, 0x01]), (16383, [0xff, 0x7f]),
      (16384, [0x80, 0x80, 0x01]), (2_097_151, [0xff, 0xff, 0x7f]),
      (2_097_152, [0x80, 0x80, 0x80, 0x01]),
    ]
    for reserve in [1, 2, 3] {
      for (length, prefix) in cases {
        let body = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var w = ProtobufWriter()
        w.append(contentsOf: [0xAA, 0xBB])  // bytes already written stay in place
        w.message(11, reserve: reserve) { $0.append(contentsOf: body) }
        let expected: [UInt8] = [0xAA, 0xBB, 0x5a] + prefix + body
        XCTAssertEqual(w.bytes.count, expected.count, "length \(length), reserve \(reserve)")
        XCTAssertTrue(w.bytes == expected, "length \(length), reserve \(reserve)")
      }
    }
  }

  func testNestedSubMessageGrowthIsCountedInOuterLength() {
    let inner = [UInt8](repeating: 0x41, count: 200)
    var w = ProtobufWriter()
    w.message(1, reserve: 1) { outer in
      outer.uint(1, 5)
      outer.message(2, reserve: 1) { $0.append(contentsOf: inner) }
    }
    // outer body = 08 05 | 12 c8 01 | 200 bytes = 205 bytes -> length cd 01
    XCTAssertEqual(Array(w.bytes.prefix(8)), [0x0a, 0xcd, 0x01, 0x08, 0x05, 0x12, 0xc8, 0x01])
    XCTAssertEqual(w.bytes.count, 3 + 205)
    XCTAssertEqual(Array(w.bytes.suffix(200)), inner)
  }

  func testZeroScalarsAreOmittedButOneofValuesAreNot() {
    var w = ProtobufWriter()
    w.uint(6, 0)
    w.fixed64(7, 0)
    w.string(5, "")
    XCTAssertEqual(w.bytes, [])
    w.bool(2, false)
    w.int64(3, 0)
    w.double(4, 0)
    XCTAssertEqual(w.bytes, [0x10, 0x00, 0x18, 0x00, 0x21, 0, 0, 0, 0, 0, 0, 0, 0])
  }

  // MARK: - SpanBatcher

  func testBatcherCutsRequestsAtMaxSpans() throws {
    var requests: [EncodedRequest] = []
    let batcher = SpanBatcher(format: .json, maxSpans: 3) { requests.append($0) }
    for i in 0..<7 { batcher.add(Self.span(i, service: i % 2 == 0 ? "Shop" : "CRM")) }
    XCTAssertEqual(requests.map(\.spanCount), [3, 3])
    batcher.flush()
    XCTAssertEqual(requests.map(\.spanCount), [3, 3, 1])
    XCTAssertEqual(try requests.map { try Self.jsonSpanNames($0.bytes).count }, [3, 3, 1])
    // Nothing is lost or repeated, and within a service the arrival order holds.
    let names = try requests.flatMap { try Self.jsonSpanNames($0.bytes) }
    XCTAssertEqual(names.sorted(), (0..<7).map { "span \($0)" }.sorted())
    XCTAssertEqual(try Self.jsonSpanNames(requests[0].bytes), ["span 1", "span 0", "span 2"])
  }

  func testBatcherFlushWithNothingBufferedSendsNothing() {
    var requests = 0
    let batcher = SpanBatcher(format: .protobuf) { _ in requests += 1 }
    batcher.flush()
    XCTAssertEqual(requests, 0)
  }

  func testBatcherKeepsProtobufRequestsUnderMaxBytes() {
    let spans = (0..<200).map { Self.span($0, service: "MES", padding: 300) }
    assertRequestsUnder(maxBytes: 4096, spans: spans, format: .protobuf)
  }

  func testBatcherKeepsJSONRequestsUnderMaxBytes() {
    let spans = (0..<200).map { Self.span($0, service: "MES", padding: 300) }
    assertRequestsUnder(maxBytes: 4096, spans: spans, format: .json)
  }

  /// Each service adds a `ResourceSpans` with its resource and scope (about 60 bytes in
  /// protobuf, 150 in JSON) that the batcher's size estimate must count too.
  func testBatcherKeepsRequestsUnderMaxBytesWithManyServices() {
    let spans = (0..<400).map { Self.span($0, service: "service-\($0 % 40)", padding: 20) }
    assertRequestsUnder(maxBytes: 4096, spans: spans, format: .protobuf)
    assertRequestsUnder(maxBytes: 4096, spans: spans, format: .json)
  }

  func testEncodeRequestGroupsByServiceInNameOrder() throws {
    let spans = [
      Self.span(0, service: "Shop"), Self.span(1, service: "CRM"), Self.span(2, service: "MES"),
    ]
    let object =
      try JSONSerialization.jsonObject(with: Data(SpanBatcher.encodeRequest(spans, format: .json)))
      as? [String: Any]
    let services = (object?["resourceSpans"] as? [[String: Any]])?.compactMap { rs -> String? in
      let attributes = (rs["resource"] as? [String: Any])?["attributes"] as? [[String: Any]]
      return (attributes?.first?["value"] as? [String: Any])?["stringValue"] as? String
    }
    XCTAssertEqual(services, ["CRM", "MES", "Shop"])
  }

  // MARK: - Helpers

  private func assertRequestsUnder(
    maxBytes: Int, spans: [SpanRecord], format: ExportFormat, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    var requests: [EncodedRequest] = []
    let batcher = SpanBatcher(format: format, maxBytes: maxBytes) { requests.append($0) }
    spans.forEach(batcher.add)
    batcher.flush()
    XCTAssertGreaterThan(
      requests.count, 1, "\(format): the spans should not fit one request", file: file, line: line)
    XCTAssertEqual(requests.map(\.spanCount).reduce(0, +), spans.count, file: file, line: line)
    let largest = requests.map(\.bytes.count).max() ?? 0
    XCTAssertLessThanOrEqual(
      largest, maxBytes, "\(format): largest request", file: file, line: line)
  }

  private static func span(_ i: Int, service: String, padding: Int = 0) -> SpanRecord {
    SpanRecord(
      traceID: TraceID(high: 0x1122_3344_5566_7788, low: UInt64(i + 1)),
      spanID: SpanID(UInt64(i + 1)),
      parentSpanID: SpanID(0xabc), name: "span \(i)", kind: .internal,
      startUnixNano: 1_774_742_000_000_000_000 + Int64(i),
      endUnixNano: 1_774_742_000_000_000_100 + Int64(i),
      attributes: [
        Attribute("order.id", "\(i)"), Attribute("pad", String(repeating: "p", count: padding)),
      ],
      service: service)
  }

  private static func jsonSpanNames(_ bytes: [UInt8]) throws -> [String] {
    let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
    let resourceSpans = object?["resourceSpans"] as? [[String: Any]] ?? []
    return resourceSpans.flatMap { rs -> [String] in
      let scopeSpans = rs["scopeSpans"] as? [[String: Any]] ?? []
      return scopeSpans.flatMap {
        ($0["spans"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
      }
    }
  }

  private static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    bytes.map { String(format: "%02x", $0) }.joined(separator: " ")
  }

  private static func fixture(_ name: String) throws -> [UInt8] {
    Array(try Data(contentsOf: fixtures.appendingPathComponent(name)))
  }

  /// The spans of one request of `spans.json`, as the fixture script describes them.
  private static func spans(_ request: String) throws -> [SpanRecord] {
    let root = try JSONSerialization.jsonObject(with: Data(fixture("spans.json"))) as? [String: Any]
    let specs = try XCTUnwrap((root?["requests"] as? [String: Any])?[request] as? [[String: Any]])
    return try specs.map(spanRecord)
  }

  private static func spanRecord(_ s: [String: Any]) throws -> SpanRecord {
    let status = try XCTUnwrap(s["status"] as? [String: Any])
    return SpanRecord(
      traceID: try traceID(s["traceId"]), spanID: try spanID(s["spanId"]),
      parentSpanID: try s["parentSpanId"].map(spanID), name: try XCTUnwrap(s["name"] as? String),
      kind: try XCTUnwrap(SpanKind(rawValue: try XCTUnwrap(s["kind"] as? Int))),
      startUnixNano: try int64(s["startTimeUnixNano"]),
      endUnixNano: try int64(s["endTimeUnixNano"]),
      attributes: try attributes(s["attributes"]),
      events: try (s["events"] as? [[String: Any]] ?? []).map {
        SpanEvent(
          timeUnixNano: try int64($0["timeUnixNano"]), name: try XCTUnwrap($0["name"] as? String),
          attributes: try attributes($0["attributes"]))
      },
      droppedEventsCount: UInt32(try XCTUnwrap(s["droppedEventsCount"] as? Int)),
      links: try (s["links"] as? [[String: Any]] ?? []).map {
        SpanLink(
          traceID: try traceID($0["traceId"]), spanID: try spanID($0["spanId"]),
          attributes: try attributes($0["attributes"]))
      },
      status: SpanStatus(
        code: try XCTUnwrap(SpanStatus.Code(rawValue: try XCTUnwrap(status["code"] as? Int))),
        message: try XCTUnwrap(status["message"] as? String)),
      service: try XCTUnwrap(s["service"] as? String))
  }

  private static func attributes(_ value: Any?) throws -> [Attribute] {
    try (value as? [[String: Any]] ?? []).map { a in
      let key = try XCTUnwrap(a["key"] as? String)
      switch a["type"] as? String {
      case "string": return Attribute(key, .string(try XCTUnwrap(a["value"] as? String)))
      case "repeat":
        let r = try XCTUnwrap(a["value"] as? [String: Any])
        let text = try XCTUnwrap(r["text"] as? String)
        return Attribute(
          key, .string(String(repeating: text, count: try XCTUnwrap(r["count"] as? Int))))
      case "int": return Attribute(key, .int(try int64(a["value"])))
      case "bool": return Attribute(key, .bool(try XCTUnwrap(a["value"] as? Bool)))
      case "double":
        return Attribute(key, .double(try XCTUnwrap((a["value"] as? NSNumber)?.doubleValue)))
      default: throw FixtureError.unknownAttributeType(a["type"] as? String ?? "nil")
      }
    }
  }

  private static func int64(_ value: Any?) throws -> Int64 {
    try XCTUnwrap((value as? String).flatMap { Int64($0) }, "int64 given as a decimal string")
  }

  private static func words(_ value: Any?, count: Int) throws -> [UInt64] {
    let text = try XCTUnwrap(value as? String)
    XCTAssertEqual(text.count, count * 16)
    return try (0..<count).map { i in
      let start = text.index(text.startIndex, offsetBy: i * 16)
      return try XCTUnwrap(UInt64(text[start..<text.index(start, offsetBy: 16)], radix: 16))
    }
  }

  private static func traceID(_ value: Any?) throws -> TraceID {
    let w = try words(value, count: 2)
    return TraceID(high: w[0], low: w[1])
  }

  private static func spanID(_ value: Any?) throws -> SpanID {
    SpanID(try words(value, count: 1)[0])
  }

  private enum FixtureError: Error { case unknownAttributeType(String) }
}

/// A parsed JSON document that keeps JSON's types apart (JSONSerialization's NSNumber would
/// let `true` equal `1`), so a bool written as a number, or an int64 written as a number
/// instead of a string, is a difference.
enum JSONValue: Equatable, CustomStringConvertible {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  init(parsing bytes: [UInt8]) throws {
    self.init(try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]))
  }

  init(_ any: Any) {
    switch any {
    case let s as String: self = .string(s)
    case let n as NSNumber:
      // JSONSerialization makes `true`/`false` NSNumbers of ObjC type "c" (char).
      if String(cString: n.objCType) == "c" {
        self = .bool(n.boolValue)
      } else {
        self = .number(n.doubleValue)
      }
    case let a as [Any]: self = .array(a.map(JSONValue.init))
    case let o as [String: Any]: self = .object(o.mapValues(JSONValue.init))
    default: self = .null
    }
  }

  /// The same document without `"status": {}` (an unset OTLP status, which the protobuf JSON
  /// mapping leaves out).
  var droppingEmptyStatus: JSONValue {
    switch self {
    case .array(let a): return .array(a.map(\.droppingEmptyStatus))
    case .object(let o):
      var out: [String: JSONValue] = [:]
      for (k, v) in o where !(k == "status" && v == .object([:])) { out[k] = v.droppingEmptyStatus }
      return .object(out)
    default: return self
    }
  }

  var description: String {
    switch self {
    case .null: return "null"
    case .bool(let b): return "\(b)"
    case .number(let n): return "\(n)"
    case .string(let s): return "\"\(s)\""
    case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
    case .object(let o):
      return "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]!.description)" }.joined(separator: ",")
        + "}"
    }
  }
}
