import Foundation
import TraceBridgeCore
import XCTest

@testable import TraceBridge

/// The live store keeps open orders in OrderState's binary form: what goes in comes out.
final class OrderStateBinaryTests: XCTestCase {
  private func sample() -> OrderState {
    var s = OrderState(
      orderID: "1234567", traceID: TraceID(high: 0xdead_beef, low: 42), rootSpanID: SpanID(7),
      firstTime: -5, lastTime: 1_764_645_000_123_456_789, firstService: "Shop")
    s.userID = "u42"
    s.lastStatus = "PAID → ✓"
    s.lastStatusTime = 1_764_645_000_000_000_000
    s.transitions = 3
    s.eventCount = 9
    s.currentEvents = [
      SpanEvent(
        timeUnixNano: 1, name: "retry",
        attributes: [
          Attribute("a", "b"), Attribute("n", .int(-3)), Attribute("d", .double(2.5)),
          Attribute("f", .bool(true)),
        ])
    ]
    s.currentDropped = 2
    s.rootEvents = [SpanEvent(timeUnixNano: 2, name: "status CREATED")]
    s.rootDropped = 1
    s.openSteps = [
      "cutting": .init(start: 10, service: "MES", attributes: [Attribute("machine", "M1")])
    ]
    s.finalTime = 99
    s.aliases = [AliasKey(kind: "mes_job", key: "J-00077")]
    return s
  }

  func testEveryFieldSurvivesTheRoundTrip() throws {
    let s = sample()
    let back = try OrderState(binary: s.binary())
    XCTAssertEqual(back.orderID, s.orderID)
    XCTAssertEqual(back.traceID, s.traceID)
    XCTAssertEqual(back.rootSpanID, s.rootSpanID)
    XCTAssertEqual(back.firstTime, s.firstTime)
    XCTAssertEqual(back.lastTime, s.lastTime)
    XCTAssertEqual(back.userID, s.userID)
    XCTAssertEqual(back.lastStatus, s.lastStatus)
    XCTAssertEqual(back.transitions, 3)
    XCTAssertEqual(back.currentEvents, s.currentEvents)
    XCTAssertEqual(back.currentDropped, 2)
    XCTAssertEqual(back.rootEvents, s.rootEvents)
    XCTAssertEqual(back.openSteps["cutting"]?.attributes, [Attribute("machine", "M1")])
    XCTAssertEqual(back.finalTime, 99)
    XCTAssertEqual(back.aliases, s.aliases)
    XCTAssertEqual(back.binary(), s.binary())
  }

  func testTruncatedOrForeignBlobsAreErrorsNotGuesses() {
    let bytes = sample().binary()
    XCTAssertThrowsError(try OrderState(binary: Array(bytes.dropLast(3))))
    XCTAssertThrowsError(try OrderState(binary: [9] + bytes.dropFirst()))
    XCTAssertThrowsError(try OrderState(binary: bytes + [0]))
  }
}
