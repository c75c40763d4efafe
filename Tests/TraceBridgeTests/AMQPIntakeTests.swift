import AMQPConsumer
import TraceBridgeCore
import XCTest

@testable import TraceBridge

final class AMQPIntakeTests: XCTestCase {
  func testTraceparentHeaderIsFoundInAnyCaseAndOnlyByItsWholeName() {
    for name in ["traceparent", "TraceParent", "TRACEPARENT", "tRaCePaReNt"] {
      XCTAssertTrue(SourceConsumer.isTraceparent(name), name)
    }
    for name in ["traceparen", "traceparent2", " traceparent", "trace-parent", "tracestate", ""] {
      XCTAssertFalse(SourceConsumer.isTraceparent(name), name)
    }
  }

  /// The pipeline commits early once this many acknowledgements wait: a quarter of the
  /// smallest prefetch, never more than 250.
  func testAckBatchIsAQuarterOfTheSmallestPrefetchAndAtMost250() {
    XCTAssertEqual(AMQPIntake.ackBatch(prefetches: [400]), 100)
    XCTAssertEqual(AMQPIntake.ackBatch(prefetches: [1000]), 250)
    XCTAssertEqual(AMQPIntake.ackBatch(prefetches: [3000]), 250)
    XCTAssertEqual(AMQPIntake.ackBatch(prefetches: [65535, 200]), 50)
    XCTAssertEqual(AMQPIntake.ackBatch(prefetches: [3]), 1)
    XCTAssertEqual(AMQPIntake.ackBatch(prefetches: [1]), 1)
  }

  /// Message identities are stored (`live_seen`) and must not change between versions: values
  /// computed independently (a Python SipHash-2-4 over the same bytes).
  func testStoredIdentitiesKeepTheirValues() {
    XCTAssertEqual(
      SourceKey(source: "shop-bus", stream: 0x1234_abcd, position: 987_654_321).identity,
      0x06c4_5042_7060_51bc)
    XCTAssertEqual(
      SourceConsumer.messageID(AMQPDelivery(deliveryTag: 1, body: [], messageID: "m-42")),
      0x8f07_71be_898a_f3f6)
  }
}
