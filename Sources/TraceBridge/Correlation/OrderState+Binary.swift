import Foundation
import TraceBridgeCore

/// A compact binary form of `OrderState` for the live store. Live mode saves every changed
/// open order at every commit; with `JSONEncoder` that alone took a third of the pipeline
/// thread at 10,000 lines/s. The layout is private to this file and versioned by its first
/// byte; a blob it cannot read is reported, not guessed at.
extension OrderState {
  static let binaryVersion: UInt8 = 1

  func binary() -> [UInt8] {
    var w = BinaryWriter()
    w.byte(Self.binaryVersion)
    w.string(orderID)
    w.u64(traceID.high)
    w.u64(traceID.low)
    w.u64(rootSpanID.value)
    w.i64(firstTime)
    w.i64(lastTime)
    w.string(firstService)
    w.optionalString(userID)
    w.optionalString(lastStatus)
    w.i64(lastStatusTime)
    w.i64(Int64(transitions))
    w.i64(Int64(eventCount))
    w.events(currentEvents)
    w.u64(UInt64(currentDropped))
    w.events(rootEvents)
    w.u64(UInt64(rootDropped))
    w.u64(UInt64(openSteps.count))
    for name in openSteps.keys.sorted() {
      let step = openSteps[name]!
      w.string(name)
      w.i64(step.start)
      w.string(step.service)
      w.attributes(step.attributes)
    }
    if let finalTime {
      w.byte(1)
      w.i64(finalTime)
    } else {
      w.byte(0)
    }
    w.aliases(aliases)
    return w.bytes
  }

  init(binary bytes: [UInt8]) throws {
    var r = BinaryReader(bytes)
    guard try r.byte() == Self.binaryVersion else { throw BinaryReader.Failure.version }
    let orderID = try r.string()
    let traceID = TraceID(high: try r.u64(), low: try r.u64())
    let root = SpanID(try r.u64())
    self.init(
      orderID: orderID, traceID: traceID, rootSpanID: root, firstTime: try r.i64(),
      lastTime: try r.i64(),
      firstService: try r.string())
    userID = try r.optionalString()
    lastStatus = try r.optionalString()
    lastStatusTime = try r.i64()
    transitions = Int(try r.i64())
    eventCount = Int(try r.i64())
    currentEvents = try r.events()
    currentDropped = UInt32(truncatingIfNeeded: try r.u64())
    rootEvents = try r.events()
    rootDropped = UInt32(truncatingIfNeeded: try r.u64())
    for _ in 0..<(try r.count()) {
      let name = try r.string()
      openSteps[name] = OpenStep(
        start: try r.i64(), service: try r.string(), attributes: try r.attributes())
    }
    finalTime = try r.byte() == 1 ? try r.i64() : nil
    aliases = try r.aliases()
    guard r.atEnd else { throw BinaryReader.Failure.trailing }
  }
}

/// A tombstone in the same style: a version byte (never `{`, which starts the JSON form of
/// stores written before it), the close time, the aliases.
extension ClosedOrder {
  static let binaryVersion: UInt8 = 1

  func binary() -> [UInt8] {
    var w = BinaryWriter()
    w.byte(Self.binaryVersion)
    w.i64(closedAt)
    w.aliases(aliases)
    return w.bytes
  }

  init(binary bytes: [UInt8]) throws {
    var r = BinaryReader(bytes)
    guard try r.byte() == Self.binaryVersion else { throw BinaryReader.Failure.version }
    let closedAt = try r.i64()
    let aliases = try r.aliases()
    guard r.atEnd else { throw BinaryReader.Failure.trailing }
    self.init(closedAt: closedAt, aliases: aliases)
  }
}

struct BinaryWriter {
  var bytes: [UInt8] = []

  mutating func byte(_ b: UInt8) { bytes.append(b) }

  /// LEB128.
  mutating func u64(_ v: UInt64) {
    var v = v
    while v >= 0x80 {
      bytes.append(UInt8(v & 0x7F) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }

  /// Zig-zag, then LEB128.
  mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }

  mutating func string(_ s: String) {
    u64(UInt64(s.utf8.count))
    bytes.append(contentsOf: s.utf8)
  }

  mutating func optionalString(_ s: String?) {
    if let s {
      byte(1)
      string(s)
    } else {
      byte(0)
    }
  }

  /// A length (LEB128) and the bytes.
  mutating func blob(_ b: [UInt8]) {
    u64(UInt64(b.count))
    bytes.append(contentsOf: b)
  }

  mutating func aliases(_ list: [AliasKey]) {
    u64(UInt64(list.count))
    for a in list {
      string(a.kind)
      string(a.key)
    }
  }

  mutating func attributes(_ list: [Attribute]) {
    u64(UInt64(list.count))
    for a in list {
      string(a.key)
      switch a.value {
      case .string(let s):
        byte(0)
        string(s)
      case .int(let i):
        byte(1)
        i64(i)
      case .double(let d):
        byte(2)
        u64(d.bitPattern)
      case .bool(let b):
        byte(3)
        byte(b ? 1 : 0)
      }
    }
  }

  mutating func events(_ list: [SpanEvent]) {
    u64(UInt64(list.count))
    for e in list {
      i64(e.timeUnixNano)
      string(e.name)
      attributes(e.attributes)
    }
  }
}

struct BinaryReader {
  enum Failure: Error, CustomStringConvertible {
    case truncated, version, trailing, badValue
    var description: String {
      switch self {
      case .truncated: return "a stored order state ends early"
      case .version:
        return
          "a stored order state has an unknown format version (written by a newer tracebridge?)"
      case .trailing: return "a stored order state has bytes after its end"
      case .badValue: return "a stored order state holds an invalid value"
      }
    }
  }

  private let bytes: [UInt8]
  private var i = 0
  init(_ bytes: [UInt8]) { self.bytes = bytes }
  var atEnd: Bool { i == bytes.count }

  mutating func byte() throws -> UInt8 {
    guard i < bytes.count else { throw Failure.truncated }
    defer { i += 1 }
    return bytes[i]
  }

  mutating func u64() throws -> UInt64 {
    var v: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      let b = try byte()
      guard shift < 64 else { throw Failure.badValue }
      v |= UInt64(b & 0x7F) << shift
      if b < 0x80 { return v }
      shift += 7
    }
  }

  mutating func i64() throws -> Int64 {
    let u = try u64()
    return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
  }

  mutating func count() throws -> Int {
    let n = try u64()
    // Each item takes a byte at least.
    guard n <= UInt64(bytes.count - i) else { throw Failure.truncated }
    return Int(n)
  }

  mutating func string() throws -> String {
    let n = try count()
    defer { i += n }
    return String(decoding: bytes[i..<i + n], as: UTF8.self)
  }

  mutating func optionalString() throws -> String? { try byte() == 1 ? try string() : nil }

  mutating func blob() throws -> [UInt8] {
    let n = try count()
    defer { i += n }
    return Array(bytes[i..<i + n])
  }

  mutating func aliases() throws -> [AliasKey] {
    var list: [AliasKey] = []
    for _ in 0..<(try count()) {
      list.append(AliasKey(kind: try string(), key: try string()))
    }
    return list
  }

  mutating func attributes() throws -> [Attribute] {
    var out: [Attribute] = []
    for _ in 0..<(try count()) {
      let key = try string()
      switch try byte() {
      case 0: out.append(Attribute(key, .string(try string())))
      case 1: out.append(Attribute(key, .int(try i64())))
      case 2: out.append(Attribute(key, .double(Double(bitPattern: try u64()))))
      case 3: out.append(Attribute(key, .bool(try byte() == 1)))
      default: throw Failure.badValue
      }
    }
    return out
  }

  mutating func events() throws -> [SpanEvent] {
    var out: [SpanEvent] = []
    for _ in 0..<(try count()) {
      out.append(
        SpanEvent(timeUnixNano: try i64(), name: try string(), attributes: try attributes()))
    }
    return out
  }
}
