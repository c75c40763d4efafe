import TraceBridgeCore
import XCTest

@testable import LogParsers

/// The body text rules read: ASCII bodies are used as they are; anything else goes through
/// the decoder (BOM dropped, invalid bytes replaced and counted).
final class MessageBodyTextTests: XCTestCase {
  func testASCIIDetectionAtEveryWordBoundary() {
    for length in 0..<20 {
      let ascii = [UInt8](repeating: 0x61, count: length)
      XCTAssertTrue(RuleEvaluator.isASCII(ascii), "length \(length)")
      for position in 0..<length {
        var bytes = ascii
        bytes[position] = 0xD0
        XCTAssertFalse(RuleEvaluator.isASCII(bytes), "length \(length), high byte at \(position)")
      }
    }
  }

  func testASCIIAndUTF8BodiesReadTheSameAndOnlyInvalidBytesCount() throws {
    let rule = try CompiledRule(
      RuleDefinition(
        name: "j", sources: ["bus"],
        matcher: .json([
          (capture: "order", pointer: "/body/id"), (capture: "ts", pointer: "/body/at"),
        ]),
        timestampFormat: "iso8601", event: EventTemplate(orderID: "${order}", kind: "log")),
      library: PatternLibrary())
    let source = SourceDefinition(
      name: "bus", service: "MES", paths: [], decoder: try CharsetDecoder(charset: "utf-8"),
      zone: try LocalZone(identifier: "UTC"))
    let ev = RuleEvaluator(source: source, rules: [rule], ruleIndices: [0])
    let key = SourceKey(source: "bus", stream: 1, position: 1)
    for (body, order, invalid) in [
      (Array(#"{"id":"A-1","at":"2026-12-01T10:05:00Z"}"#.utf8), "A-1", 0),
      (
        [0xEF, 0xBB, 0xBF] + Array(#"{"id":"Заказ-1","at":"2026-12-01T10:05:00Z"}"#.utf8),
        "Заказ-1", 0
      ),
      (
        Array(#"{"id":"B"#.utf8) + [0xFF] + Array(#"","at":"2026-12-01T10:05:00Z"}"#.utf8),
        "B\u{FFFD}", 1
      ),
    ] {
      let e = ev.evaluate(message: MessageInput(body: body), sourceKey: key)
      guard case .matched(_, let event) = e.outcome else {
        XCTFail("no match for \(order): \(e.outcome)")
        continue
      }
      XCTAssertEqual(event.key, .order(order))
      XCTAssertEqual(e.invalidBytes, invalid)
    }
  }
}
