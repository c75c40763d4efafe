/// How a rule's timestamp text is turned into an instant.
///
/// A format is one of the keywords `iso8601`, `epoch_seconds`, `epoch_millis`, or a pattern:
///
/// | token | meaning |
/// | --- | --- |
/// | `yyyy` | year, exactly 4 digits |
/// | `MM` / `M` | month, 2 digits / 1–2 digits |
/// | `MMM` | English month abbreviation `Jan`…`Dec` (any letter case) |
/// | `dd` / `d`, `HH` / `H`, `mm` / `m`, `ss` / `s` | day, hour (00–23), minute, second: 2 digits / 1–2 digits |
/// | `S`…`S` | fraction of a second: exactly as many digits as `S`s (1–9) |
/// | `XXX`, `XX`, `X`, `Z`, `x` | UTC offset: `Z`, `+03:00`, `+0300` or `+03` (any of them, whichever token) |
/// | `'text'` | literal text (`''` is a quote) |
///
/// Any other character stands for itself (`-`, `:`, `/`, `.`, `,`, space, `T`). Letters that other
/// date libraries use as pattern letters (`h`, `a`, `E`, `z`, `G`, …) are rejected rather than
/// taken literally, so a Java pattern this type cannot honour fails at start, not on every line.
///
/// `iso8601` accepts `2026-03-29T01:59:58.123+01:00`: a space or `T` between date and time,
/// `.` or `,` before a fraction of 0–9 digits (7-digit .NET fractions too), seconds optional,
/// offset `Z`, `+01:00`, `+0100`, `+01` or none.
///
/// `epoch_seconds` (`1774749598`, `1774749598.123`) and `epoch_millis` (`1774749598123`) are
/// UTC by definition; the zone is ignored.
///
/// Parsing works on UTF-8 bytes, allocates nothing and calls no Foundation API.
public struct TimestampFormat: Sendable, Equatable {
  private let kind: Kind

  /// Compiles a format; fails with what to change when the pattern is not understood.
  public init(parsing spec: String) throws(TimestampFormatError) {
    switch spec.lowercased() {
    case "iso8601", "iso-8601": kind = .iso8601
    case "epoch_seconds": kind = .epochSeconds
    case "epoch_millis": kind = .epochMillis
    default: kind = .pattern(try TimestampFormat.compile(spec))
    }
  }

  /// Parses exactly the whole `text` (UTF-8) and returns UTC nanoseconds since the Unix epoch,
  /// or nil when the text does not fit the format or names an impossible date or time.
  /// Text without an offset is local time in `zone` (see ``LocalZone`` for gaps and overlaps).
  public func parse(_ text: UnsafeBufferPointer<UInt8>, zone: LocalZone) -> Int64? {
    var carriedOffset = false
    return parse(text, zone: zone, carriedOffset: &carriedOffset)
  }

  /// Like ``parse(_:zone:)``; `carriedOffset` tells whether the text fixed the instant itself
  /// (an offset or `Z`, or an epoch number) rather than `zone` deciding it.
  public func parse(_ text: UnsafeBufferPointer<UInt8>, zone: LocalZone, carriedOffset: inout Bool)
    -> Int64?
  {
    switch kind {
    case .iso8601:
      return TimestampFormat.parseISO8601(text, zone: zone, carriedOffset: &carriedOffset)
    case .epochSeconds:
      carriedOffset = true
      return TimestampFormat.parseEpoch(text, fractionDigits: 9, unit: 1_000_000_000)
    case .epochMillis:
      carriedOffset = true
      return TimestampFormat.parseEpoch(text, fractionDigits: 6, unit: 1_000_000)
    case .pattern(let tokens):
      return TimestampFormat.parse(text, tokens: tokens, zone: zone, carriedOffset: &carriedOffset)
    }
  }

  /// Parses exactly the whole `text`, like the byte-buffer overload.
  public func parse(_ text: String, zone: LocalZone) -> Int64? {
    var carriedOffset = false
    return parse(text, zone: zone, carriedOffset: &carriedOffset)
  }

  public func parse(_ text: String, zone: LocalZone, carriedOffset: inout Bool) -> Int64? {
    var copy = text
    return copy.withUTF8 { parse($0, zone: zone, carriedOffset: &carriedOffset) }
  }

  // MARK: - Representation

  private enum Kind: Sendable, Equatable {
    case iso8601
    case epochSeconds
    case epochMillis
    case pattern([Token])
  }

  private enum Field: UInt8, Sendable, Equatable {
    case year, month, day, hour, minute, second
  }

  private enum Token: Sendable, Equatable {
    /// A decimal number of `minDigits`…`maxDigits` digits (greedy).
    case number(Field, minDigits: Int, maxDigits: Int)
    case monthAbbreviation
    /// Exactly `digits` fraction digits.
    case fraction(digits: Int)
    case offset
    case literal(UInt8)
  }

  // MARK: - Compiling a pattern

  private static func compile(_ spec: String) throws(TimestampFormatError) -> [Token] {
    if spec.allSatisfy(\.isWhitespace) { throw .emptyFormat }
    let scalars = Array(spec.unicodeScalars)
    var tokens: [Token] = []
    var seen: Set<String> = []
    var i = 0
    func literal(_ s: Unicode.Scalar) {
      for b in String(Character(s)).utf8 { tokens.append(.literal(b)) }
    }
    while i < scalars.count {
      let c = scalars[i]
      let position = i + 1
      if c == "'" {
        // Quoted literal text; '' is a quote.
        if i + 1 < scalars.count && scalars[i + 1] == "'" {
          literal("'")
          i += 2
          continue
        }
        var j = i + 1
        while true {
          guard j < scalars.count else { throw .unterminatedQuote(position: position) }
          if scalars[j] == "'" {
            if j + 1 < scalars.count && scalars[j + 1] == "'" {
              literal("'")
              j += 2
              continue
            }
            break
          }
          literal(scalars[j])
          j += 1
        }
        i = j + 1
        continue
      }
      guard c.isASCII, c.properties.isAlphabetic else {
        literal(c)
        i += 1
        continue
      }
      var run = 1
      while i + run < scalars.count && scalars[i + run] == c { run += 1 }
      let text = String(repeating: Character(c), count: run)
      func field(_ name: String, _ token: Token) throws(TimestampFormatError) {
        if seen.contains(name) { throw .duplicateField(text, position: position) }
        seen.insert(name)
        tokens.append(token)
      }
      switch (c, run) {
      case ("y", 4): try field("yyyy", .number(.year, minDigits: 4, maxDigits: 4))
      case ("M", 1...2): try field("MM", .number(.month, minDigits: run, maxDigits: 2))
      case ("M", 3): try field("MM", .monthAbbreviation)
      case ("d", 1...2): try field("dd", .number(.day, minDigits: run, maxDigits: 2))
      case ("H", 1...2): try field("HH", .number(.hour, minDigits: run, maxDigits: 2))
      case ("m", 1...2): try field("mm", .number(.minute, minDigits: run, maxDigits: 2))
      case ("s", 1...2): try field("ss", .number(.second, minDigits: run, maxDigits: 2))
      case ("S", 1...9): try field("S", .fraction(digits: run))
      case ("X", 1...3), ("x", 1...3), ("Z", 1...5): try field("offset", .offset)
      case _ where TimestampFormat.reservedLetters.contains(c):
        throw .unknownToken(text, position: position)
      default:
        literal(c)
        i += 1
        continue
      }
      i += run
    }
    for (name, shown) in [("yyyy", "yyyy"), ("MM", "MM"), ("dd", "dd"), ("HH", "HH"), ("mm", "mm")]
    where !seen.contains(name) {
      throw .missingField(shown)
    }
    if seen.contains("S") && !seen.contains("ss") { throw .missingField("ss") }
    return tokens
  }

  /// Letters that date pattern languages (Java, ICU) give a meaning; taken literally they would
  /// hide a mistake, so the ones not supported here are rejected.
  private static let reservedLetters: Set<Unicode.Scalar> = Set(
    "GuyDMLdQqYwWEecFahKkHmsSAnNVzOXxZpBg".unicodeScalars)

  // MARK: - Parsing a pattern

  private static func parse(
    _ text: UnsafeBufferPointer<UInt8>, tokens: [Token], zone: LocalZone, carriedOffset: inout Bool
  ) -> Int64? {
    var fields = DateFields()
    var offset: Int64? = nil
    var i = 0
    let n = text.count
    for token in tokens {
      switch token {
      case .number(let field, let minDigits, let maxDigits):
        var value = 0
        var digits = 0
        while digits < maxDigits && i < n {
          let d = text[i] &- 0x30
          if d > 9 { break }
          value = value * 10 + Int(d)
          i += 1
          digits += 1
        }
        if digits < minDigits { return nil }
        switch field {
        case .year: fields.year = value
        case .month: fields.month = value
        case .day: fields.day = value
        case .hour: fields.hour = value
        case .minute: fields.minute = value
        case .second: fields.second = value
        }
      case .monthAbbreviation:
        guard n - i >= 3, let month = monthNumber(text[i], text[i + 1], text[i + 2]) else {
          return nil
        }
        fields.month = month
        i += 3
      case .fraction(let digits):
        guard n - i >= digits else { return nil }
        var value: Int64 = 0
        for k in 0..<digits {
          let d = text[i + k] &- 0x30
          if d > 9 { return nil }
          value = value * 10 + Int64(d)
        }
        fields.nanos = value * powersOfTen[9 - digits]
        i += digits
      case .offset:
        guard let seconds = parseOffset(text, &i) else { return nil }
        offset = seconds
      case .literal(let byte):
        guard i < n, text[i] == byte else { return nil }
        i += 1
      }
    }
    guard i == n else { return nil }
    carriedOffset = offset != nil
    return fields.utcNanoseconds(offset: offset, zone: zone)
  }

  // MARK: - ISO 8601

  private static func parseISO8601(
    _ text: UnsafeBufferPointer<UInt8>, zone: LocalZone, carriedOffset: inout Bool
  ) -> Int64? {
    let n = text.count
    guard n >= 16 else { return nil }
    var fields = DateFields()
    guard let year = digits(text, 0, 4), text[4] == 0x2D,  // -
      let month = digits(text, 5, 2), text[7] == 0x2D,
      let day = digits(text, 8, 2),
      text[10] == 0x54 || text[10] == 0x20 || text[10] == 0x74,  // T, space, t
      let hour = digits(text, 11, 2), text[13] == 0x3A,  // :
      let minute = digits(text, 14, 2)
    else { return nil }
    fields.year = year
    fields.month = month
    fields.day = day
    fields.hour = hour
    fields.minute = minute
    var i = 16
    if i < n && text[i] == 0x3A {
      guard n - i >= 3, let second = digits(text, i + 1, 2) else { return nil }
      fields.second = second
      i += 3
      if i < n && (text[i] == 0x2E || text[i] == 0x2C) {  // . or ,
        i += 1
        var value: Int64 = 0
        var count = 0
        while i < n {
          let d = text[i] &- 0x30
          if d > 9 { break }
          count += 1
          if count > 9 { return nil }
          value = value * 10 + Int64(d)
          i += 1
        }
        if count == 0 { return nil }
        fields.nanos = value * powersOfTen[9 - count]
      }
    }
    var offset: Int64? = nil
    if i < n {
      guard let seconds = parseOffset(text, &i), i == n else { return nil }
      offset = seconds
    }
    carriedOffset = offset != nil
    return fields.utcNanoseconds(offset: offset, zone: zone)
  }

  // MARK: - Epoch numbers

  private static func parseEpoch(
    _ text: UnsafeBufferPointer<UInt8>, fractionDigits: Int, unit: Int64
  ) -> Int64? {
    let n = text.count
    var i = 0
    var negative = false
    if i < n && (text[i] == 0x2D || text[i] == 0x2B) {
      negative = text[i] == 0x2D
      i += 1
    }
    var whole: Int64 = 0
    var count = 0
    while i < n {
      let d = text[i] &- 0x30
      if d > 9 { break }
      count += 1
      if count > 18 { return nil }
      whole = whole * 10 + Int64(d)
      i += 1
    }
    if count == 0 { return nil }
    var fraction: Int64 = 0
    if i < n && text[i] == 0x2E {
      i += 1
      count = 0
      while i < n {
        let d = text[i] &- 0x30
        if d > 9 { break }
        count += 1
        if count > fractionDigits { return nil }
        fraction = fraction * 10 + Int64(d)
        i += 1
      }
      if count == 0 { return nil }
      fraction *= powersOfTen[fractionDigits - count]
    }
    guard i == n else { return nil }
    let (scaled, overflow) = whole.multipliedReportingOverflow(by: unit)
    let (total, overflow2) = scaled.addingReportingOverflow(fraction)
    if overflow || overflow2 { return nil }
    return negative ? -total : total
  }

  // MARK: - Pieces

  private static let powersOfTen: [Int64] = [
    1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000,
  ]

  /// Exactly `count` ASCII digits at `start` (the caller has checked the bounds).
  @inline(__always)
  private static func digits(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Int?
  {
    var value = 0
    for k in start..<(start + count) {
      let d = text[k] &- 0x30
      if d > 9 { return nil }
      value = value * 10 + Int(d)
    }
    return value
  }

  /// `Z`/`z`, `±HH:MM`, `±HHMM` or `±HH` at `i`; advances `i` past it. Seconds east of UTC.
  private static func parseOffset(_ text: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Int64? {
    let n = text.count
    guard i < n else { return nil }
    let sign = text[i]
    if sign == 0x5A || sign == 0x7A {  // Z, z
      i += 1
      return 0
    }
    guard sign == 0x2B || sign == 0x2D, n - i >= 3, let hours = digits(text, i + 1, 2) else {
      return nil
    }
    var j = i + 3
    var minutes = 0
    if j < n && text[j] == 0x3A {
      guard n - j >= 3, let m = digits(text, j + 1, 2) else { return nil }
      minutes = m
      j += 3
    } else if n - j >= 2, let m = digits(text, j, 2) {
      minutes = m
      j += 2
    }
    guard hours <= 18, minutes <= 59 else { return nil }
    i = j
    let seconds = Int64(hours * 3600 + minutes * 60)
    return sign == 0x2D ? -seconds : seconds
  }

  /// `Jan`…`Dec` in any letter case → 1…12.
  @inline(__always)
  private static func monthNumber(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> Int? {
    let key = UInt32(a | 0x20) << 16 | UInt32(b | 0x20) << 8 | UInt32(c | 0x20)
    switch key {
    case 0x6A_616E: return 1  // jan
    case 0x66_6562: return 2  // feb
    case 0x6D_6172: return 3  // mar
    case 0x61_7072: return 4  // apr
    case 0x6D_6179: return 5  // may
    case 0x6A_756E: return 6  // jun
    case 0x6A_756C: return 7  // jul
    case 0x61_7567: return 8  // aug
    case 0x73_6570: return 9  // sep
    case 0x6F_6374: return 10  // oct
    case 0x6E_6F76: return 11  // nov
    case 0x64_6563: return 12  // dec
    default: return nil
    }
  }
}

/// The parsed parts of a date and time, before they become an instant.
private struct DateFields {
  var year = 1970
  var month = 1
  var day = 1
  var hour = 0
  var minute = 0
  var second = 0
  var nanos: Int64 = 0

  /// Validates the fields and converts them to UTC nanoseconds; nil for an impossible date
  /// (February 30, hour 24, minute 60) or one outside the Int64 nanosecond range (1677–2262).
  /// Second 60 (a leap second) is accepted and counts as the next minute's second 0.
  @inline(__always)
  func utcNanoseconds(offset: Int64?, zone: LocalZone) -> Int64? {
    guard month >= 1, month <= 12, day >= 1, hour <= 23, minute <= 59, second <= 60 else {
      return nil
    }
    let isLeap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    let monthDays =
      month == 2
      ? (isLeap ? 29 : 28) : (month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31)
    guard day <= monthDays else { return nil }
    let local =
      daysFromCivil(year: year, month: month, day: day) * 86_400
      + Int64(hour * 3600 + minute * 60 + second)
    let utc = offset.map { local - $0 } ?? zone.utcSeconds(fromLocalSeconds: local)
    let (scaled, overflow) = utc.multipliedReportingOverflow(by: 1_000_000_000)
    let (total, overflow2) = scaled.addingReportingOverflow(nanos)
    return overflow || overflow2 ? nil : total
  }
}

/// Why a timestamp format could not be compiled. The description says what to change.
public enum TimestampFormatError: Error, Equatable, CustomStringConvertible {
  /// The format is empty.
  case emptyFormat
  /// A pattern letter that is not supported (`hh`, `a`, `yy`, `EEE`, `z`…); position is 1-based.
  case unknownToken(String, position: Int)
  /// A field appears twice; position is 1-based.
  case duplicateField(String, position: Int)
  /// A field an instant needs is missing (`yyyy`, `MM`, `dd`, `HH`, `mm`; `ss` when there is a fraction).
  case missingField(String)
  /// A `'` opens literal text that is never closed; position is 1-based.
  case unterminatedQuote(position: Int)

  public var description: String {
    let supported =
      "supported: iso8601, epoch_seconds, epoch_millis, or a pattern of yyyy MM MMM dd HH mm ss S…S (1–9 fraction digits) XXX/XX/Z (offset)"
    switch self {
    case .emptyFormat:
      return "empty timestamp format; \(supported)"
    case .unknownToken(let token, let position):
      return
        "unsupported token '\(token)' at position \(position) of the timestamp format; \(supported); quote literal letters ('T')"
    case .duplicateField(let token, let position):
      return "'\(token)' at position \(position) repeats a field the timestamp format already has"
    case .missingField(let field):
      return
        "the timestamp format has no '\(field)'; an instant needs yyyy, MM, dd, HH and mm (and ss with a fraction)"
    case .unterminatedQuote(let position):
      return
        "the quote at position \(position) of the timestamp format is never closed; close it with ' (write '' for a quote)"
    }
  }
}
