import Exporters
import XCTest

/// SplitMix64: a small seeded generator, so jittered delays are reproducible.
struct SeededGenerator: RandomNumberGenerator {
  private var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

final class RetryPolicyTests: XCTestCase {
  private let policy = RetryPolicy(
    initialInterval: 1, maxInterval: 30, maxElapsed: 300, multiplier: 2)

  /// The capped exponential interval of retry `attempt`, before jitter: 1, 2, 4, 8, 16, 30, 30, …
  private func interval(_ attempt: Int) -> Double {
    min(policy.initialInterval * pow(policy.multiplier, Double(attempt - 1)), policy.maxInterval)
  }

  func testThrottlingAndGatewayStatusesAreRetryable() {
    for status in [429, 502, 503, 504] {
      XCTAssertTrue(RetryPolicy.isRetryable(status: status), "\(status)")
    }
  }

  func testClientErrorsAndInternalServerErrorAreNotRetryable() {
    for status in [200, 400, 401, 403, 404, 413, 500, 501] {
      XCTAssertFalse(RetryPolicy.isRetryable(status: status), "\(status)")
    }
  }

  func testRetryAfterIsHonouredInsteadOfBackoff() {
    var rng = SeededGenerator(seed: 1)
    XCTAssertEqual(policy.delay(attempt: 1, retryAfter: 7, using: &rng), 7)
    XCTAssertEqual(policy.delay(attempt: 9, retryAfter: 0, using: &rng), 0)
    XCTAssertEqual(
      policy.delay(attempt: 3, retryAfter: 45, using: &rng), 45,
      "Retry-After may exceed maxInterval")
  }

  func testRetryAfterIsCappedAtMaxElapsed() {
    var rng = SeededGenerator(seed: 1)
    XCTAssertEqual(policy.delay(attempt: 1, retryAfter: 86_400, using: &rng), 300)
  }

  func testNegativeRetryAfterFallsBackToBackoff() {
    var rng = SeededGenerator(seed: 1)
    let d = policy.delay(attempt: 1, retryAfter: -5, using: &rng)
    XCTAssertGreaterThanOrEqual(d, 0.5)
    XCTAssertLessThanOrEqual(d, 1)
  }

  func testRetryAfterSecondsAreParsed() {
    XCTAssertEqual(RetryPolicy.parseRetryAfter("12"), 12)
    XCTAssertEqual(RetryPolicy.parseRetryAfter(" 3 "), 3)
    XCTAssertEqual(RetryPolicy.parseRetryAfter("0"), 0)
    XCTAssertEqual(RetryPolicy.parseRetryAfter("1.5"), 1.5)
  }

  func testUnusableRetryAfterIsIgnored() {
    XCTAssertNil(RetryPolicy.parseRetryAfter(nil))
    XCTAssertNil(RetryPolicy.parseRetryAfter(""))
    XCTAssertNil(RetryPolicy.parseRetryAfter("-3"))
    XCTAssertNil(RetryPolicy.parseRetryAfter("soon"))
    // The HTTP-date form (RFC 9110) is not understood: backoff is used instead.
    XCTAssertNil(RetryPolicy.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"))
  }

  func testJitteredDelayStaysWithinHalfToFullInterval() {
    var rng = SeededGenerator(seed: 42)
    for attempt in 1...12 {
      for _ in 0..<200 {
        let d = policy.delay(attempt: attempt, retryAfter: nil, using: &rng)
        XCTAssertGreaterThanOrEqual(d, 0.5 * interval(attempt), "attempt \(attempt)")
        XCTAssertLessThanOrEqual(d, interval(attempt), "attempt \(attempt)")
      }
    }
  }

  func testJitterSpreadsDelaysOverTheRange() {
    var rng = SeededGenerator(seed: 7)
    let delays = (0..<1000).map { _ in policy.delay(attempt: 4, retryAfter: nil, using: &rng) }
    // Interval 8: delays in [4, 8]; a real spread reaches near both ends.
    XCTAssertLessThan(delays.min()!, 4.2)
    XCTAssertGreaterThan(delays.max()!, 7.8)
    XCTAssertGreaterThan(Set(delays).count, 900)
  }

  /// The same random draw for each attempt isolates the interval: it doubles, then stays at maxInterval.
  func testBackoffDoublesPerAttemptUntilCappedAtMaxInterval() {
    let delays = (1...9).map { attempt -> Double in
      var rng = SeededGenerator(seed: 99)
      return policy.delay(attempt: attempt, retryAfter: nil, using: &rng)
    }
    let unit = delays[0]  // interval 1 times the jitter factor
    XCTAssertGreaterThanOrEqual(unit, 0.5)
    for (i, d) in delays.enumerated() {
      XCTAssertEqual(d, unit * interval(i + 1), accuracy: 1e-9, "attempt \(i + 1)")
    }
    XCTAssertEqual(delays[5], delays[8], "capped at maxInterval 30")
  }

  func testSameSeedGivesSameDelays() {
    var a = SeededGenerator(seed: 5)
    var b = SeededGenerator(seed: 5)
    for attempt in 1...6 {
      XCTAssertEqual(
        policy.delay(attempt: attempt, retryAfter: nil, using: &a),
        policy.delay(attempt: attempt, retryAfter: nil, using: &b))
    }
  }

  func testFirstAttemptAndNonPositiveAttemptUseInitialInterval() {
    let small = RetryPolicy(initialInterval: 0.2, maxInterval: 5, maxElapsed: 60, multiplier: 3)
    var rng = SeededGenerator(seed: 3)
    for attempt in [0, 1] {
      let d = small.delay(attempt: attempt, retryAfter: nil, using: &rng)
      XCTAssertGreaterThanOrEqual(d, 0.1)
      XCTAssertLessThanOrEqual(d, 0.2)
    }
  }
}
