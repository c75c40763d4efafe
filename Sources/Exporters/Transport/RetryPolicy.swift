/// When and how long to wait before sending a request again, as the OTLP specification
/// says: 429, 502, 503, 504 and connection failures are retryable; a `Retry-After` the server
/// sends is honoured; otherwise exponential backoff with jitter, capped; and after
/// `maxElapsed` the request is given up and reported.
public struct RetryPolicy: Sendable, Equatable {
  public var initialInterval: Double
  public var maxInterval: Double
  public var maxElapsed: Double
  public var multiplier: Double

  public init(
    initialInterval: Double = 1, maxInterval: Double = 30, maxElapsed: Double = 300,
    multiplier: Double = 2
  ) {
    self.initialInterval = initialInterval
    self.maxInterval = maxInterval
    self.maxElapsed = maxElapsed
    self.multiplier = multiplier
  }

  public static func isRetryable(status: Int) -> Bool {
    status == 429 || status == 502 || status == 503 || status == 504
  }

  /// The wait before retry number `attempt` (1-based): the server's `Retry-After` when given,
  /// else a random point in the upper half of the capped exponential interval.
  public func delay<G: RandomNumberGenerator>(attempt: Int, retryAfter: Double?, using rng: inout G)
    -> Double
  {
    if let retryAfter, retryAfter >= 0 { return min(retryAfter, maxElapsed) }
    var interval = initialInterval
    for _ in 1..<max(1, attempt) { interval = min(interval * multiplier, maxInterval) }
    interval = min(interval, maxInterval)
    return interval * Double.random(in: 0.5...1.0, using: &rng)
  }

  /// Parses a `Retry-After` value given in seconds (the form OTLP servers use).
  public static func parseRetryAfter(_ value: String?) -> Double? {
    guard let value = value?.trimmingCharacters(in: .whitespaces), let s = Double(value), s >= 0
    else { return nil }
    return s
  }
}

extension String {
  fileprivate func trimmingCharacters(in set: CharacterSetLite) -> String {
    var s = Substring(self)
    while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
    while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
    return String(s)
  }
}

private enum CharacterSetLite { case whitespaces }
