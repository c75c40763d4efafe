#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Decodes a record's bytes from the source charset to UTF-8.
///
/// Invalid input never traps and never stops decoding: each invalid sequence becomes U+FFFD and
/// is counted. For UTF-8 input "one sequence" is a maximal invalid subpart, exactly as Swift's
/// `String(decoding:as: UTF8.self)` replaces it. Single-byte charsets (windows-1251, koi8-r,
/// iso-8859-*) decode through a 256-entry table built with iconv once, at init; multibyte and
/// stateful charsets (Shift_JIS, GB18030, UTF-16, …) go through iconv on every call, each call
/// starting from the charset's initial state.
public struct CharsetDecoder: Sendable {
  /// The charset name as given (`windows-1251`).
  public let charset: String
  private let method: Method

  /// Creates a decoder for any charset glibc iconv knows (`utf-8`, `windows-1251`, `cp1251`,
  /// `koi8-r`, `iso-8859-1`, `shift_jis`, …; letter case does not matter).
  public init(charset: String) throws(CharsetError) {
    self.charset = charset
    let name = charset.lowercased()
    if name == "utf-8" || name == "utf8" {
      method = .utf8
      return
    }
    let converter = try IconvConverter(charset: charset)
    if let table = SingleByteTable(converter: converter) {
      method = .table(table)
    } else {
      method = .iconv(converter)
    }
  }

  /// Whether the source charset is UTF-8 (decoding only validates).
  public var isUTF8: Bool {
    if case .utf8 = method { return true }
    return false
  }

  /// Whether decoding `bytes` would give them back unchanged: a UTF-8 source and valid UTF-8
  /// (then the caller may use them as they are, without `decode`'s copy).
  public func passesThrough(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard case .utf8 = method else { return false }
    guard let base = bytes.baseAddress else { return true }
    return UTF8Repair.validPrefix(base, bytes.count) == bytes.count
  }

  /// Appends the UTF-8 text of `bytes` to `out` (which is not cleared) and returns the number
  /// of invalid sequences that were replaced by U+FFFD.
  public func decode(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) -> Int {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
    switch method {
    case .utf8: return UTF8Repair.append(base, bytes.count, to: &out)
    case .table(let table): return table.append(base, bytes.count, to: &out)
    case .iconv(let converter): return converter.append(base, bytes.count, to: &out)
    }
  }

  private enum Method: Sendable {
    case utf8
    case table(SingleByteTable)
    case iconv(IconvConverter)
  }
}

/// Why a decoder could not be created.
public enum CharsetError: Error, Equatable, CustomStringConvertible {
  /// iconv does not know the charset.
  case unknownCharset(String)
  /// iconv knows the charset but could not open a converter (the system's reason attached).
  case converterUnavailable(String, reason: String)

  public var description: String {
    switch self {
    case .unknownCharset(let name):
      return
        "unknown charset '\(name)'; use a name glibc iconv knows, such as utf-8, windows-1251, koi8-r or iso-8859-1 (list them all with `iconv -l`)"
    case .converterUnavailable(let name, let reason):
      return "cannot convert from charset '\(name)' to UTF-8: \(reason)"
    }
  }
}

// MARK: - Shared pieces

private let replacementCharacter: (UInt8, UInt8, UInt8) = (0xEF, 0xBF, 0xBD)
private let highBits: UInt64 = 0x8080_8080_8080_8080

extension Array where Element == UInt8 {
  @inline(__always)
  fileprivate mutating func appendReplacementCharacter() {
    append(replacementCharacter.0)
    append(replacementCharacter.1)
    append(replacementCharacter.2)
  }

  @inline(__always)
  fileprivate mutating func append(_ base: UnsafePointer<UInt8>, from: Int, to: Int) {
    if to > from { append(contentsOf: UnsafeBufferPointer(start: base + from, count: to - from)) }
  }
}

/// Index of the first byte at or after `i` that is not ASCII, or `n`.
@inline(__always)
private func endOfASCII(_ p: UnsafePointer<UInt8>, _ n: Int, from start: Int) -> Int {
  var i = start
  let raw = UnsafeRawPointer(p)
  while i + 8 <= n {
    let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
    if word & highBits != 0 { break }
    i += 8
  }
  while i < n && p[i] < 0x80 { i += 1 }
  return i
}

// MARK: - UTF-8

/// Validates UTF-8 and replaces each maximal invalid subpart (Unicode's "best practice", the
/// same as the standard library) with U+FFFD.
private enum UTF8Repair {
  /// Index of the first invalid sequence, or `n` when all of it is valid.
  static func validPrefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
    var i = 0
    while true {
      i = endOfASCII(p, n, from: i)
      if i == n { return n }
      let length = sequenceLength(p, n, i)
      if length < 0 { return i }
      i += length
    }
  }

  static func append(_ p: UnsafePointer<UInt8>, _ n: Int, to out: inout [UInt8]) -> Int {
    // Fast path: valid input is copied in one piece.
    var i = validPrefix(p, n)
    if i == n {
      out.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
      return 0
    }
    // Slow path from the first invalid sequence.
    out.append(p, from: 0, to: i)
    var invalid = 0
    var runStart = i
    while i < n {
      if p[i] < 0x80 {
        i = endOfASCII(p, n, from: i)
        continue
      }
      let length = sequenceLength(p, n, i)
      if length > 0 {
        i += length
      } else {
        out.append(p, from: runStart, to: i)
        out.appendReplacementCharacter()
        invalid += 1
        i -= length
        runStart = i
      }
    }
    out.append(p, from: runStart, to: n)
    return invalid
  }

  /// Length of the valid sequence at `i` (1–4), or minus the length of the maximal invalid
  /// subpart that starts there.
  @inline(__always)
  static func sequenceLength(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int) -> Int {
    let lead = p[i]
    if lead < 0x80 { return 1 }
    let continuation: Int
    var low: UInt8 = 0x80
    var high: UInt8 = 0xBF
    switch lead {
    case 0xC2...0xDF: continuation = 1
    case 0xE0:
      continuation = 2
      low = 0xA0
    case 0xE1...0xEC, 0xEE, 0xEF: continuation = 2
    case 0xED:
      continuation = 2
      high = 0x9F
    case 0xF0:
      continuation = 3
      low = 0x90
    case 0xF1...0xF3: continuation = 3
    case 0xF4:
      continuation = 3
      high = 0x8F
    default: return -1
    }
    var k = 1
    while k <= continuation {
      guard i + k < n else { return -k }
      let b = p[i + k]
      if b < low || b > high { return -k }
      low = 0x80
      high = 0xBF
      k += 1
    }
    return k
  }
}

// MARK: - Single-byte charsets

/// Each byte's UTF-8 text, learned from iconv once.
private struct SingleByteTable: Sendable {
  /// Per source byte: its UTF-8 text (1–3 bytes, first byte in the low bits) in bits 0–23, the
  /// text's length in bits 24–30, and bit 31 set when iconv rejected the byte (the text is then
  /// U+FFFD).
  private let entries: [UInt32]
  /// Bytes 0x00–0x7F decode to themselves, so ASCII runs can be copied.
  private let asciiIsIdentity: Bool

  /// Nil when the charset is not a stateless single-byte charset of the Basic Multilingual
  /// Plane (a byte alone is incomplete, yields nothing, or yields more than 3 UTF-8 bytes).
  init?(converter: IconvConverter) {
    var entries = [UInt32](repeating: 0, count: 256)
    for byte in 0...255 {
      switch converter.convertAlone(UInt8(byte)) {
      case .incompleteOrStateful:
        return nil
      case .rejected:
        entries[byte] = 1 << 31 | 3 << 24 | 0xBD_BFEF
      case .converted(let bytes, let count):
        guard count <= 3 else { return nil }
        entries[byte] = UInt32(count) << 24 | bytes
      }
    }
    self.entries = entries
    asciiIsIdentity = (0..<128).allSatisfy { entries[$0] == 1 << 24 | UInt32($0) }
  }

  func append(_ p: UnsafePointer<UInt8>, _ n: Int, to out: inout [UInt8]) -> Int {
    if asciiIsIdentity && endOfASCII(p, n, from: 0) == n {
      out.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
      return 0
    }
    let blockSize = 4096
    let asciiIsIdentity = asciiIsIdentity
    var invalid = 0
    var i = 0
    entries.withUnsafeBufferPointer { table in
      // 3 output bytes per input byte at most, plus the 4th byte every entry store writes.
      withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blockSize * 3 + 8) { block in
        let o = UnsafeMutableRawPointer(block.baseAddress!)
        let source = UnsafeRawPointer(p)
        while i < n {
          let end = min(n, i + blockSize)
          var w = 0
          while i < end {
            let byte = p[i]
            if byte < 0x80 && asciiIsIdentity {
              o.storeBytes(of: byte, toByteOffset: w, as: UInt8.self)
              i += 1
              w += 1
              while i + 8 <= end {
                let word = source.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                if word & highBits != 0 { break }
                o.storeBytes(of: word, toByteOffset: w, as: UInt64.self)
                i += 8
                w += 8
              }
              continue
            }
            let entry = table[Int(byte)]
            // Stores 4 bytes; the 4th (the length) is overwritten by what follows or not used.
            o.storeBytes(of: entry.littleEndian, toByteOffset: w, as: UInt32.self)
            w += Int(entry >> 24 & 0x7F)
            invalid &+= Int(entry >> 31)
            i += 1
          }
          out.append(contentsOf: UnsafeBufferPointer(start: block.baseAddress!, count: w))
        }
      }
    }
    return invalid
  }
}

// MARK: - iconv

/// An iconv converter from a charset to UTF-8, shared by copies of a decoder and used under a lock.
private final class IconvConverter: @unchecked Sendable {
  private let descriptor: iconv_t
  private let lock: UnsafeMutablePointer<pthread_mutex_t>

  init(charset: String) throws(CharsetError) {
    let cd = iconv_open("UTF-8", charset)
    if Int(bitPattern: UnsafeRawPointer(cd)) == -1 || cd == nil {
      let code = errno
      if code == EINVAL { throw .unknownCharset(charset) }
      throw .converterUnavailable(charset, reason: String(cString: strerror(code)))
    }
    descriptor = cd!
    lock = .allocate(capacity: 1)
    pthread_mutex_init(lock, nil)
  }

  deinit {
    iconv_close(descriptor)
    pthread_mutex_destroy(lock)
    lock.deallocate()
  }

  enum Single {
    case converted(UInt32, count: Int)
    case rejected
    case incompleteOrStateful
  }

  /// Converts one byte on its own, from the initial state.
  func convertAlone(_ byte: UInt8) -> Single {
    pthread_mutex_lock(lock)
    defer { pthread_mutex_unlock(lock) }
    iconv(descriptor, nil, nil, nil, nil)
    var input = CChar(bitPattern: byte)
    var output: (UInt64, UInt64) = (0, 0)
    return withUnsafeMutablePointer(to: &input) { inputPointer in
      withUnsafeMutableBytes(of: &output) { outputBytes in
        var inPointer: UnsafeMutablePointer<CChar>? = inputPointer
        var inLeft = 1
        let outStart = outputBytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        var outPointer: UnsafeMutablePointer<CChar>? = outStart
        var outLeft = outputBytes.count
        if iconv(descriptor, &inPointer, &inLeft, &outPointer, &outLeft) == -1 {
          return errno == EILSEQ ? .rejected : .incompleteOrStateful
        }
        let beforeFlush = outLeft
        if iconv(descriptor, nil, nil, &outPointer, &outLeft) == -1 || outLeft != beforeFlush {
          return .incompleteOrStateful  // the charset has shift states
        }
        let count = outputBytes.count - outLeft
        guard inLeft == 0, (1...4).contains(count) else { return .incompleteOrStateful }
        var packed: UInt32 = 0
        for k in 0..<count { packed |= UInt32(outputBytes[k]) << (8 * UInt32(k)) }
        return .converted(packed, count: count)
      }
    }
  }

  /// Converts a whole record, starting from the initial state.
  func append(_ p: UnsafePointer<UInt8>, _ n: Int, to out: inout [UInt8]) -> Int {
    pthread_mutex_lock(lock)
    defer { pthread_mutex_unlock(lock) }
    iconv(descriptor, nil, nil, nil, nil)
    var invalid = 0
    let blockSize = 16 * 1024
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: blockSize) { block in
      let blockStart = block.baseAddress!
      var inPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(mutating: p)
        .assumingMemoryBound(to: CChar.self)
      var inLeft = n
      var outPointer: UnsafeMutablePointer<CChar>? = blockStart
      var outLeft = blockSize
      func flushBlock() {
        let count = blockSize - outLeft
        if count > 0 {
          blockStart.withMemoryRebound(to: UInt8.self, capacity: count) {
            out.append(contentsOf: UnsafeBufferPointer(start: $0, count: count))
          }
        }
        outPointer = blockStart
        outLeft = blockSize
      }
      while inLeft > 0 {
        if iconv(descriptor, &inPointer, &inLeft, &outPointer, &outLeft) != -1 { break }
        switch errno {
        case E2BIG:
          flushBlock()
        case EILSEQ:
          flushBlock()
          out.appendReplacementCharacter()
          invalid += 1
          inPointer = inPointer! + 1
          inLeft -= 1
        default:  // EINVAL: the record ends inside a sequence
          flushBlock()
          out.appendReplacementCharacter()
          invalid += 1
          inLeft = 0
        }
      }
      // Return to the initial shift state (may emit bytes for stateful charsets).
      while iconv(descriptor, nil, nil, &outPointer, &outLeft) == -1 && errno == E2BIG {
        flushBlock()
      }
      flushBlock()
    }
    return invalid
  }
}
