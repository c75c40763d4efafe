import AMQPConsumer
import Foundation
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

  /// A consumer's quiet mark reaches the pipeline with the events put before it, wakes the
  /// pipeline even when no event comes with it, holds until the next delivery, and a delivery
  /// put after it ends it.
  func testTheQuietMarkComesAfterItsEventsWakesThePipelineAndHoldsUntilTheNextDelivery() {
    let inbox = AMQPIntake.Inbox()
    let wakes = Wakes()
    inbox.wake = { wakes.add() }
    let event = OrderEvent(
      key: .order("o-1"), service: "Shop", kind: .statusChange, status: "PAID", name: "PAID",
      timeUnixNano: 1_000_000_000, zoneRule: "UTC", attributes: [],
      sourceKey: SourceKey(source: "bus", stream: 1, position: 1), rule: "status")
    func put(_ tag: UInt64) {
      inbox.put(
        QueuedEvent(
          event: event, rule: 0, delivery: DeliveryRef(source: 0, generation: 1, tag: tag),
          received: 0))
    }
    put(1)
    XCTAssertFalse(inbox.drain().quiet)
    put(2)
    inbox.markQuiet()
    var drained = inbox.drain()
    XCTAssertEqual(drained.events.map(\.delivery.tag), [2])
    XCTAssertTrue(drained.quiet)
    // A level: still quiet while nothing is delivered.
    drained = inbox.drain()
    XCTAssertTrue(drained.events.isEmpty)
    XCTAssertTrue(drained.quiet)
    XCTAssertEqual(wakes.count, 3)  // two events into an empty inbox, then the mark
    // A delivery after the mark ends the quiet: the pipeline must not take it for the last.
    put(3)
    drained = inbox.drain()
    XCTAssertEqual(drained.events.map(\.delivery.tag), [3])
    XCTAssertFalse(drained.quiet)
    XCTAssertFalse(inbox.drain().quiet)
    // The mark wakes the pipeline even with nothing in the inbox.
    inbox.markQuiet()
    XCTAssertEqual(wakes.count, 5)
    XCTAssertTrue(inbox.drain().quiet)
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

/// Counts the inbox's wake calls (they come from the thread that puts or marks).
private final class Wakes: @unchecked Sendable {
  private let lock = NSLock()
  private var n = 0
  func add() {
    lock.lock()
    n += 1
    lock.unlock()
  }
  var count: Int {
    lock.lock()
    defer { lock.unlock() }
    return n
  }
}
