import TraceBridgeCore
import XCTest

@testable import LogParsers

/// The body text rules read: valid UTF-8 from a UTF-8 source is used as it is; anything else
/// goes through the decoder (BOM dropped, invalid bytes replaced and counted).
final class MessageBodyTextTests: XCTestCase {
  func testOnlyValidUTF8FromAUTF8SourcePassesThrough() throws {
    let utf8 = try CharsetDecoder(charset: "utf-8")
    func passes(_ bytes: [UInt8], _ d: CharsetDecoder) -> Bool {
      bytes.withUnsafeBufferPointer { d.passesThrough($0) }
    }
    for length in 0..<20 {
      let ascii = [UInt8](repeating: 0x61, count: length)
      XCTAssertTrue(passes(ascii, utf8), "length \(length)")
      for position in 0..<length {
        var bytes = ascii
        bytes[position] = 0xFF  // never valid, at every place of the 8-byte words
        XCTAssertFalse(passes(bytes, utf8), "length \(length), invalid byte at \(position)")
      }
    }
    XCTAssertTrue(passes(Array("Заказ ✓ 𝄞".utf8), utf8))
    XCTAssertFalse(passes([0x61, 0xD0], utf8), "a truncated sequence")
    XCTAssertFalse(passes([0xED, 0xA0, 0x80], utf8), "an encoded surrogate")
    XCTAssertFalse(
      passes(Array("abc".utf8), try CharsetDecoder(charset: "windows-1251")),
      "another charset is always decoded")
  }

  func testValidAndRepairedBodiesReadTheSameAndOnlyInvalidBytesCount() throws {
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
