import Crypto

/// Derives trace and span ids deterministically from a secret, so that a replay, a restart
/// or a backfill of the same input produces byte-identical spans (Jaeger drops exact
/// duplicates), and nobody without the secret can predict or forge an order's trace id.
///
/// - trace id: the first 16 bytes of HMAC-SHA-256(secret, `order|<namespace>|<orderId>`);
///   computed once per order.
/// - span ids: SipHash-2-4 keyed with a 128-bit subkey derived from the secret
///   (HMAC-SHA-256(secret, `tracebridge span key v1`)), over the event's stable source key.
///   A keyed PRF like the trace id's HMAC, but about twenty times cheaper: span ids are
///   derived once per matched line on the hot path (see docs/architecture.md).
public struct IDDeriver: Sendable {
  public let namespace: String
  /// HMAC-SHA-256 keyed with the secret, before any message: copied for each trace id, so the
  /// key schedule (both pads hashed) is paid once, not per order. Never mutated: each use
  /// copies it, and its hash states are copy-on-write values, so sharing it across threads is
  /// safe although swift-crypto does not mark `HMAC` `Sendable`.
  nonisolated(unsafe) private let keyed: HMAC<SHA256>
  private let k0: UInt64
  private let k1: UInt64
  /// `order|<namespace>|`, what every trace id's message starts with.
  private let tracePrefix: [UInt8]

  public init(secret: [UInt8], namespace: String) {
    self.namespace = namespace
    self.tracePrefix = Array("order|\(namespace)|".utf8)
    self.keyed = HMAC<SHA256>(key: SymmetricKey(data: secret))
    let sub = Array(
      HMAC<SHA256>.authenticationCode(
        for: Array("tracebridge span key v1".utf8), using: SymmetricKey(data: secret)))
    self.k0 = Self.word(sub, 0)
    self.k1 = Self.word(sub, 8)
  }

  /// The trace id of an order. Never all-zero.
  public func traceID(orderID: String) -> TraceID {
    var hmac = keyed
    // `order|<namespace>|<orderId>` assembled in a stack buffer and fed in one update: each
    // `update` is an unspecialised generic call into swift-crypto, and four of them (one a
    // piece) were two thirds of an id's cost.
    var order = orderID
    order.withUTF8 { id in
      let count = tracePrefix.count + id.count
      withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { buffer in
        buffer.copyBytes(from: tracePrefix)
        UnsafeMutableRawBufferPointer(rebasing: buffer[tracePrefix.count...]).copyMemory(
          from: UnsafeRawBufferPointer(id))
        hmac.update(data: UnsafeRawBufferPointer(buffer))
      }
    }
    var id = hmac.finalize().withUnsafeBytes { mac in
      var id = TraceID(high: Self.bigEndianWord(mac, 0), low: Self.bigEndianWord(mac, 8))
      if id.isZero {
        id = TraceID(high: Self.bigEndianWord(mac, 16), low: Self.bigEndianWord(mac, 24))
      }
      return id
    }
    if id.isZero { id.low = 1 }
    return id
  }

  /// The id of an order's root span. Never zero.
  public func rootSpanID(orderID: String) -> SpanID {
    var hasher = SipHasher(k0: k0, k1: k1)
    hasher.append(utf8: "root|")
    hasher.append(utf8: namespace)
    hasher.append(byte: UInt8(ascii: "|"))
    hasher.append(utf8: orderID)
    return Self.nonZero(hasher.finish())
  }

  /// The id of the span an event ends (a transition, a step) derived from its stable source key
  /// and its time. The time guards against two files that share a first line (a header every
  /// rotated file starts with) and so a fingerprint: their events at one offset would
  /// otherwise share ids. `role` tells apart spans one event yields. Never zero.
  public func spanID(for sourceKey: SourceKey, time: Int64, role: UInt8 = 0) -> SpanID {
    var hasher = SipHasher(k0: k0, k1: k1)
    hasher.append(utf8: "span|")
    hasher.append(utf8: namespace)
    hasher.append(byte: UInt8(ascii: "|"))
    hasher.append(utf8: sourceKey.source)
    hasher.append(byte: UInt8(ascii: "|"))
    hasher.append(word: sourceKey.stream)
    hasher.append(word: sourceKey.position)
    hasher.append(word: UInt64(bitPattern: time))
    hasher.append(byte: role)
    return Self.nonZero(hasher.finish())
  }

  private static func nonZero(_ v: UInt64) -> SpanID { SpanID(v == 0 ? 1 : v) }

  private static func word(_ b: [UInt8], _ at: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(b[at + i]) << (8 * UInt64(i)) }
    return v
  }

  private static func bigEndianWord(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v = v << 8 | UInt64(b[at + i]) }
    return v
  }
}
