/// A minimal protobuf wire-format writer: exactly what OTLP traces need, canonical encoding
/// (minimal varints, fields in number order), so equal spans encode to equal bytes.
///
/// Writes into a buffer of its own through a pointer (an `[UInt8]` checked uniqueness and
/// capacity at every byte appended: most of a span's encoding time); `bytes` copies it out.
struct ProtobufWriter: ~Copyable {
  private var base: UnsafeMutablePointer<UInt8>
  private var capacity: Int
  private(set) var count = 0

  init(capacity: Int = 512) {
    self.capacity = max(capacity, 64)
    base = .allocate(capacity: self.capacity)
  }

  deinit { base.deallocate() }

  /// What was written.
  var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

  @inline(__always) private mutating func reserve(_ n: Int) {
    if count + n > capacity { grow(count + n) }
  }

  @inline(never) private mutating func grow(_ needed: Int) {
    var c = capacity * 2
    while c < needed { c *= 2 }
    let b = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
    b.initialize(from: base, count: count)
    base.deallocate()
    base = b
    capacity = c
  }

  @inline(__always) private mutating func raw(_ p: UnsafeRawBufferPointer) {
    guard let from = p.baseAddress, p.count > 0 else { return }
    reserve(p.count)
    UnsafeMutableRawPointer(base + count).copyMemory(from: from, byteCount: p.count)
    count += p.count
  }

  @inline(__always) mutating func varint(_ value: UInt64) {
    reserve(10)
    var v = value
    while v >= 0x80 {
      base[count] = UInt8(truncatingIfNeeded: v) | 0x80
      count += 1
      v >>= 7
    }
    base[count] = UInt8(v)
    count += 1
  }

  @inline(__always) mutating func tag(_ field: Int, _ wireType: Int) {
    varint(UInt64(field << 3 | wireType))
  }

  mutating func string(_ field: Int, _ value: String) {
    guard !value.isEmpty else { return }
    tag(field, 2)
    let done: Void? = value.utf8.withContiguousStorageIfAvailable { buf in
      varint(UInt64(buf.count))
      raw(UnsafeRawBufferPointer(buf))
    }
    if done == nil {
      let utf8 = Array(value.utf8)
      varint(UInt64(utf8.count))
      utf8.withUnsafeBytes { raw($0) }
    }
  }

  mutating func bytesField(_ field: Int, _ value: [UInt8]) {
    guard !value.isEmpty else { return }
    tag(field, 2)
    varint(UInt64(value.count))
    value.withUnsafeBytes { raw($0) }
  }

  /// An 8-byte id, big-endian.
  mutating func idField(_ field: Int, _ word: UInt64) {
    tag(field, 2)
    varint(8)
    withUnsafeBytes(of: word.bigEndian) { raw($0) }
  }

  /// A 16-byte id from two words, big-endian.
  mutating func idField(_ field: Int, _ high: UInt64, _ low: UInt64) {
    tag(field, 2)
    varint(16)
    withUnsafeBytes(of: high.bigEndian) { raw($0) }
    withUnsafeBytes(of: low.bigEndian) { raw($0) }
  }

  mutating func fixed64(_ field: Int, _ value: UInt64) {
    guard value != 0 else { return }
    tag(field, 1)
    withUnsafeBytes(of: value.littleEndian) { raw($0) }
  }

  mutating func double(_ field: Int, _ value: Double) {
    tag(field, 1)
    withUnsafeBytes(of: value.bitPattern.littleEndian) { raw($0) }
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
    varint(value ? 1 : 0)
  }

  /// Writes a length-delimited sub-message whose body `body` writes. The length is reserved
  /// as `reserve` bytes and the body moved only when the guess was wrong.
  @inline(__always)
  mutating func message(_ field: Int, reserve: Int = 1, _ body: (inout ProtobufWriter) -> Void) {
    precondition(reserve > 0)
    tag(field, 2)
    self.reserve(reserve)
    let lengthAt = count
    count += reserve
    let start = count
    body(&self)
    let length = count - start
    let needed = Self.varintSize(UInt64(length))
    if needed != reserve {
      if needed > reserve { self.reserve(needed - reserve) }
      // Move the body so that the length takes `needed` bytes (`update(from:count:)` copies
      // overlapping regions correctly).
      (base + lengthAt + needed).update(from: base + start, count: length)
      count = lengthAt + needed + length
    }
    var v = UInt64(length)
    var i = lengthAt
    while v >= 0x80 {
      base[i] = UInt8(truncatingIfNeeded: v) | 0x80
      v >>= 7
      i += 1
    }
    base[i] = UInt8(v)
  }

  /// Appends bytes as they are (no tag, no length).
  mutating func append(contentsOf bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw($0) }
  }

  /// Appends already-encoded message bytes as field `field`.
  mutating func embedded(_ field: Int, _ encoded: [UInt8]) {
    tag(field, 2)
    varint(UInt64(encoded.count))
    encoded.withUnsafeBytes { raw($0) }
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
