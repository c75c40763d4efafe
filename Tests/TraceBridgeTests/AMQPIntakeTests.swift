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
}
