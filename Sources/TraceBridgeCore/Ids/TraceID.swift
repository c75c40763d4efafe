/// A 16-byte OTLP trace id, stored big-endian as two words. Never all-zero when derived.
public struct TraceID: Sendable, Hashable, Codable, CustomStringConvertible {
  public var high: UInt64
  public var low: UInt64
  public init(high: UInt64, low: UInt64) {
    self.high = high
    self.low = low
  }
  public var isZero: Bool { high == 0 && low == 0 }
  /// The id's 16 bytes in wire order.
  public var bytes: [UInt8] { high.bigEndianBytes + low.bigEndianBytes }
  /// Lower-case hex, the form OTLP JSON and Jaeger URLs use.
  public var description: String {
    // One allocation (two 16-digit strings and their concatenation were five): the state
    // store writes an order's trace id as text in every commit that touches the order.
    String(unsafeUninitializedCapacity: 32) { buffer in
      Hex.write(high, to: buffer, at: 0)
      Hex.write(low, to: buffer, at: 16)
      return 32
    }
  }
}

/// An 8-byte OTLP span id, stored as a big-endian word. Never zero when derived.
public struct SpanID: Sendable, Hashable, Codable, CustomStringConvertible {
  public var value: UInt64
  public init(_ value: UInt64) { self.value = value }
  public var bytes: [UInt8] { value.bigEndianBytes }
  public var description: String { Hex.encode(value) }
}

extension UInt64 {
  @inlinable var bigEndianBytes: [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: self >> (56 - 8 * UInt64($0))) }
  }
}

/// Lower-case hex of ids.
public enum Hex {
  /// The lower-case hex digit of `value`'s 4 bits that end `shift` bits from its right.
  @inlinable @inline(__always) static func digit(_ value: UInt64, _ shift: UInt64) -> UInt8 {
    let nibble = UInt8(truncatingIfNeeded: value >> shift) & 0xF
    return nibble < 10 ? 0x30 + nibble : 0x57 + nibble  // "0"..."9", "a"...
  }

  public static func encode(_ value: UInt64) -> String {
    String(unsafeUninitializedCapacity: 16) { buffer in
      write(value, to: buffer, at: 0)
      return 16
    }
  }

  /// Writes 16 hex digits of `value` into `buffer[at..<at+16]`.
  @inline(__always) static func write(
    _ value: UInt64, to buffer: UnsafeMutableBufferPointer<UInt8>, at: Int
  ) {
    for i in 0..<16 { buffer[at + i] = digit(value, 60 - 4 * UInt64(i)) }
  }

  /// Appends 16 hex digits of `value` to `buffer`.
  @inlinable public static func append(_ value: UInt64, to buffer: inout [UInt8]) {
    for i in 0..<16 { buffer.append(digit(value, 60 - 4 * UInt64(i))) }
  }
}
