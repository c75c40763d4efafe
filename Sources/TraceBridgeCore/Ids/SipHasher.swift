/// SipHash-2-4 (Aumasson and Bernstein), a keyed 64-bit PRF. Swift's own `Hasher` is seeded
/// per process, so it cannot give ids that are stable across runs; this one is.
///
/// Inlinable and word-at-a-time: the live pipeline hashes every message (its identity, span
/// ids), and the byte-at-a-time version with an out-of-line rotate was 1–2 % of a queue drain.
public struct SipHasher: Sendable {
  @usableFromInline var v0: UInt64
  @usableFromInline var v1: UInt64
  @usableFromInline var v2: UInt64
  @usableFromInline var v3: UInt64
  /// Bytes appended since the last full 8-byte block, little-endian in the low bytes.
  @usableFromInline var tail: UInt64 = 0
  @usableFromInline var tailCount: Int = 0
  @usableFromInline var length: Int = 0

  @inlinable public init(k0: UInt64, k1: UInt64) {
    v0 = k0 ^ 0x736f_6d65_7073_6575
    v1 = k1 ^ 0x646f_7261_6e64_6f6d
    v2 = k0 ^ 0x6c79_6765_6e65_7261
    v3 = k1 ^ 0x7465_6462_7974_6573
  }

  @inlinable public mutating func append(byte: UInt8) {
    tail |= UInt64(byte) << (8 * UInt64(tailCount))
    tailCount += 1
    length += 1
    if tailCount == 8 {
      compress(tail)
      tail = 0
      tailCount = 0
    }
  }

  @inlinable public mutating func append(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { append(bytes: $0) }
  }

  /// The UTF-8 bytes of `text`, without copying them into an array first.
  @inlinable public mutating func append(utf8 text: String) {
    var text = text
    text.withUTF8 { append(bytes: UnsafeRawBufferPointer($0)) }
  }

  @inlinable public mutating func append(bytes: UnsafeRawBufferPointer) {
    var i = 0
    let n = bytes.count
    while tailCount != 0 && i < n {
      append(byte: bytes[i])
      i += 1
    }
    while n - i >= 8 {
      compress(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
      length += 8
      i += 8
    }
    while i < n {
      append(byte: bytes[i])
      i += 1
    }
  }

  /// The word's 8 bytes, least significant first.
  @inlinable public mutating func append(word: UInt64) {
    length += 8
    if tailCount == 0 {
      compress(word)
    } else {
      let shift = 8 * UInt64(tailCount)
      compress(tail | word << shift)
      tail = word >> (64 - shift)
    }
  }

  @inlinable public mutating func finish() -> UInt64 {
    let b = (UInt64(length & 0xFF) << 56) | tail
    compress(b)
    v2 ^= 0xFF
    round()
    round()
    round()
    round()
    return v0 ^ v1 ^ v2 ^ v3
  }

  @inlinable @inline(__always) mutating func compress(_ m: UInt64) {
    v3 ^= m
    round()
    round()
    v0 ^= m
  }

  @inlinable @inline(__always) mutating func round() {
    v0 &+= v1
    v1 = Self.rotl(v1, 13)
    v1 ^= v0
    v0 = Self.rotl(v0, 32)
    v2 &+= v3
    v3 = Self.rotl(v3, 16)
    v3 ^= v2
    v0 &+= v3
    v3 = Self.rotl(v3, 21)
    v3 ^= v0
    v2 &+= v1
    v1 = Self.rotl(v1, 17)
    v1 ^= v2
    v2 = Self.rotl(v2, 32)
  }

  @inlinable @inline(__always) static func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 {
    (x &<< b) | (x &>> (64 &- b))
  }
}
