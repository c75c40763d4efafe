/// A minimal protobuf wire-format writer: exactly what OTLP traces need, canonical encoding
/// (minimal varints, fields in number order), so equal spans encode to equal bytes.
struct ProtobufWriter {
  var bytes: [UInt8] = []

  init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

  @inline(__always) mutating func varint(_ value: UInt64) {
    var v = value
    while v >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }

  @inline(__always) mutating func tag(_ field: Int, _ wireType: Int) {
    varint(UInt64(field << 3 | wireType))
  }

  mutating func string(_ field: Int, _ value: String) {
    guard !value.isEmpty else { return }
    tag(field, 2)
    var v = value
    v.withUTF8 { buf in
      varint(UInt64(buf.count))
      bytes.append(contentsOf: buf)
    }
  }

  mutating func bytesField(_ field: Int, _ value: [UInt8]) {
    guard !value.isEmpty else { return }
    tag(field, 2)
    varint(UInt64(value.count))
    bytes.append(contentsOf: value)
  }

  /// A 16- or 8-byte id written from big-endian words.
  mutating func idField(_ field: Int, _ words: UInt64...) {
    tag(field, 2)
    varint(UInt64(words.count * 8))
    for w in words {
      for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: w >> (56 - 8 * UInt64(i)))) }
    }
  }

  mutating func fixed64(_ field: Int, _ value: UInt64) {
    guard value != 0 else { return }
    tag(field, 1)
    for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
  }

  mutating func double(_ field: Int, _ value: Double) {
    tag(field, 1)
    let bits = value.bitPattern
    for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
  }

  mutating func uint(_ field: Int, _ value: UInt64) {
    guard value != 0 else { return }
    tag(field, 0)
    varint(value)
  }

  mutating func int64(_ field: Int, _ value: Int64) {
    tag(field, 0)
    varint(UInt64(bitPattern: value))
  }

  mutating func bool(_ field: Int, _ value: Bool) {
    tag(field, 0)
    bytes.append(value ? 1 : 0)
  }

  /// Writes a length-delimited sub-message whose body `body` writes. The length is reserved
  /// as `reserve` bytes and the body moved only when the guess was wrong.
  @inline(__always)
  mutating func message(_ field: Int, reserve: Int = 1, _ body: (inout ProtobufWriter) -> Void) {
    tag(field, 2)
    let lengthAt = bytes.count
    for _ in 0..<reserve { bytes.append(0) }
    let start = bytes.count
    body(&self)
    let length = bytes.count - start
    let needed = Self.varintSize(UInt64(length))
    if needed != reserve {
      if needed > reserve {
        bytes.insert(contentsOf: repeatElement(0, count: needed - reserve), at: lengthAt)
      } else {
        bytes.removeSubrange(lengthAt..<(lengthAt + reserve - needed))
      }
    }
    var v = UInt64(length)
    var i = lengthAt
    while v >= 0x80 {
      bytes[i] = UInt8(truncatingIfNeeded: v) | 0x80
      v >>= 7
      i += 1
    }
    bytes[i] = UInt8(v)
  }

  /// Appends already-encoded message bytes as field `field`.
  mutating func embedded(_ field: Int, _ encoded: [UInt8]) {
    tag(field, 2)
    varint(UInt64(encoded.count))
    bytes.append(contentsOf: encoded)
  }

  static func varintSize(_ value: UInt64) -> Int {
    var n = 1
    var v = value
    while v >= 0x80 {
      v >>= 7
      n += 1
    }
    return n
  }
}
