import CPCRE2

/// A PCRE2 pattern compiled once (UTF and Unicode properties on) and JIT-compiled when the
/// platform supports it. Immutable and shareable between threads; each thread matches through
/// its own `PatternMatcher`, which owns the match data.
public final class CompiledPattern: @unchecked Sendable {
  /// The pattern as compiled (after `%{NAME}` expansion).
  public let pattern: String
  /// Named groups: name → group number.
  public let groupNumbers: [String: Int]
  /// Group names in group-number order (nil for unnamed groups); index 0 is the whole match.
  public let groupNames: [String?]
  public let isJIT: Bool
  let code: OpaquePointer

  /// Compiles `pattern`. The error names the offset and PCRE2's reason.
  public init(_ pattern: String, caseless: Bool = false) throws(PatternError) {
    self.pattern = pattern
    var errorCode: Int32 = 0
    var errorOffset: Int = 0
    var options = UInt32(PCRE2_UTF) | UInt32(PCRE2_UCP)
    if caseless { options |= UInt32(PCRE2_CASELESS) }
    let bytes = Array(pattern.utf8)
    let compiled = bytes.withUnsafeBufferPointer { buf in
      pcre2_compile_8(buf.baseAddress, buf.count, options, &errorCode, &errorOffset, nil)
    }
    guard let compiled else {
      throw PatternError.invalid(
        pattern: pattern, offset: errorOffset, reason: Self.message(errorCode))
    }
    code = compiled
    isJIT = pcre2_jit_compile_8(compiled, UInt32(PCRE2_JIT_COMPLETE)) == 0

    var captureCount: UInt32 = 0
    pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_CAPTURECOUNT), &captureCount)
    var nameCount: UInt32 = 0
    var entrySize: UInt32 = 0
    var table: UnsafePointer<UInt8>? = nil
    pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_NAMECOUNT), &nameCount)
    pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_NAMEENTRYSIZE), &entrySize)
    pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_NAMETABLE), &table)
    var numbers: [String: Int] = [:]
    var names = [String?](repeating: nil, count: Int(captureCount) + 1)
    if let table {
      for i in 0..<Int(nameCount) {
        let entry = table + i * Int(entrySize)
        let number = Int(entry[0]) << 8 | Int(entry[1])
        let name = String(cString: entry + 2)
        numbers[name] = number
        names[number] = name
      }
    }
    groupNumbers = numbers
    groupNames = names
  }

  deinit { pcre2_code_free_8(code) }

  static func message(_ code: Int32) -> String {
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = buffer.withUnsafeMutableBufferPointer {
      pcre2_get_error_message_8(code, $0.baseAddress, $0.count)
    }
    return n > 0 ? String(decoding: buffer[0..<Int(n)], as: UTF8.self) : "PCRE2 error \(code)"
  }
}

/// Matches one `CompiledPattern` on one thread; owns the PCRE2 match data. Not Sendable.
public final class PatternMatcher {
  public let pattern: CompiledPattern
  private let matchData: OpaquePointer
  private let ovector: UnsafeMutablePointer<Int>

  public init(_ pattern: CompiledPattern) {
    self.pattern = pattern
    matchData = pcre2_match_data_create_from_pattern_8(pattern.code, nil)!
    ovector = pcre2_get_ovector_pointer_8(matchData)
  }

  deinit { pcre2_match_data_free_8(matchData) }

  /// Matches against valid UTF-8 `text`. After a match, `range(ofGroup:)` gives the
  /// captures' byte offsets into `text`.
  @inline(__always)
  public func matches(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
    let base = text.baseAddress ?? UnsafePointer(bitPattern: 1)!
    let rc: Int32
    if pattern.isJIT {
      rc = pcre2_jit_match_8(pattern.code, base, text.count, 0, 0, matchData, nil)
    } else {
      rc = pcre2_match_8(
        pattern.code, base, text.count, 0, UInt32(PCRE2_NO_UTF_CHECK), matchData, nil)
    }
    return rc > 0
  }

  public func matches(_ text: String) -> Bool {
    var text = text
    return text.withUTF8 { matches($0) }
  }

  /// The byte range of group `number` in the last matched text, nil when it did not take part.
  @inline(__always)
  public func range(ofGroup number: Int) -> Range<Int>? {
    let start = ovector[2 * number]
    let end = ovector[2 * number + 1]
    if start == Int(bitPattern: UInt(bitPattern: -1)) || start > end { return nil }
    return start..<end
  }
}

public enum PatternError: Error, Equatable, CustomStringConvertible {
  case invalid(pattern: String, offset: Int, reason: String)
  case unknownSubPattern(name: String, known: [String])
  case recursiveSubPattern(chain: [String])
  case malformedReference(String)

  public var description: String {
    switch self {
    case .invalid(let pattern, let offset, let reason):
      return "invalid pattern at offset \(offset) (\(reason)): \(pattern)"
    case .unknownSubPattern(let name, let known):
      return
        "unknown sub-pattern %{\(name)}; define it under 'patterns:' or use one of: \(known.joined(separator: ", "))"
    case .recursiveSubPattern(let chain):
      return "sub-patterns refer to each other in a loop: \(chain.joined(separator: " → "))"
    case .malformedReference(let text):
      return "malformed sub-pattern reference '\(text)'; write %{NAME} or %{NAME:capture}"
    }
  }
}
