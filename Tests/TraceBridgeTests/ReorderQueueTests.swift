import XCTest

@testable import TraceBridge

final class ReorderQueueTests: XCTestCase {
  func testElementsComeOutByTimeThenSequence() {
    var q = ReorderQueue<String>()
    q.insert("b", time: 20, sequence: 1)
    q.insert("a", time: 10, sequence: 2)
    q.insert("c", time: 20, sequence: 3)
    q.insert("early", time: 5, sequence: 4)
    XCTAssertEqual(q.count, 4)
    XCTAssertEqual(q.withMin { $0 }, "early")
    var out: [String] = []
    while let e = q.removeMin() { out.append(e) }
    XCTAssertEqual(out, ["early", "a", "b", "c"])
    XCTAssertTrue(q.isEmpty)
    XCTAssertNil(q.withMin { $0 })
  }

  /// Inserts and removals interleaved (slots freed and reused while others wait) give what
  /// sorting every element by (time, sequence) gives.
  func testInterleavedUseMatchesSorting() {
    var rng = SystemRandomNumberGenerator()
    var q = ReorderQueue<(Int64, UInt64)>()
    var waiting: [(Int64, UInt64)] = []
    var sequence: UInt64 = 0
    for _ in 0..<5_000 {
      if Bool.random(using: &rng) || waiting.isEmpty {
        sequence += 1
        let t = Int64.random(in: 0...50, using: &rng)
        q.insert((t, sequence), time: t, sequence: sequence)
        waiting.append((t, sequence))
      } else {
        waiting.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        let expected = waiting.removeFirst()
        XCTAssertEqual(q.withMin { $0.1 }, expected.1)
        let got = q.removeMin()
        XCTAssertEqual(got?.0, expected.0)
        XCTAssertEqual(got?.1, expected.1)
      }
      XCTAssertEqual(q.count, waiting.count)
    }
  }
}
