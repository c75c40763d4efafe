import Foundation

/// An IANA time zone for converting local wall-clock times to UTC.
///
/// Immutable and `Sendable`: the zone's offset changes for the years 1970–2100 are computed once,
/// when the zone is created, so a conversion is a binary search over a few hundred integers and
/// never calls Foundation. Before 1970 the zone's 1970 offset applies; after 2100 the offset in
/// force at the end of 2100.
///
/// Times that do not exist or exist twice are resolved like Java's `ZonedDateTime`:
/// - in a gap (spring forward) the local time is read with the offset in force *before* the
///   transition, so 02:30 in a 02:00→03:00 gap becomes 03:30 summer time;
/// - in an overlap (fall back) the earlier of the two instants is chosen (again the offset
///   before the transition).
public struct LocalZone: Sendable {
  /// Coordinated Universal Time: no offset, no transitions.
  public static let utc = LocalZone(utcNamed: "UTC")

  /// The identifier the zone was created with (`Europe/Berlin`).
  public let identifier: String

  /// Offset (seconds east of UTC) before the first transition.
  private let initialOffset: Int32
  /// UTC seconds at which each transition takes effect, ascending.
  private let transitionsUTC: [Int64]
  /// Offset in force from the transition with the same index on.
  private let offsets: [Int32]
  /// For each transition, the first local wall-clock second that is read with the new offset:
  /// the transition's instant plus the larger of the offsets before and after it. Local times
  /// below it (including a gap's or an overlap's) use the offset before the transition.
  private let localSwitches: [Int64]

  /// Creates the zone named by an IANA identifier (`Europe/Moscow`, `America/New_York`, `UTC`).
  public init(identifier: String) throws(LocalZoneError) {
    guard !identifier.isEmpty, let zone = TimeZone(identifier: identifier) else {
      throw .unknownIdentifier(identifier)
    }
    self.identifier = identifier
    let start = Date(timeIntervalSince1970: 0)
    let end = Date(timeIntervalSince1970: LocalZone.lastPrecomputedSecond)
    let initial = Int32(zone.secondsFromGMT(for: start))
    var transitions: [Int64] = []
    var offsets: [Int32] = []
    var switches: [Int64] = []
    var previous = initial
    var cursor = start
    while let next = zone.nextDaylightSavingTimeTransition(after: cursor), next < end {
      let at = Int64(next.timeIntervalSince1970.rounded(.down))
      let offset = Int32(zone.secondsFromGMT(for: next))
      transitions.append(at)
      offsets.append(offset)
      switches.append(at + Int64(max(previous, offset)))
      previous = offset
      cursor = next
    }
    initialOffset = initial
    transitionsUTC = transitions
    self.offsets = offsets
    localSwitches = switches
  }

  /// Local wall-clock seconds (the local date and time counted as if they were UTC:
  /// `daysFromCivil(...) * 86400 + secondsOfDay`) → UTC seconds since the Unix epoch.
  public func utcSeconds(fromLocalSeconds local: Int64) -> Int64 {
    local - Int64(offset(atLocal: local))
  }

  /// The zone's offset from UTC, in seconds east of Greenwich, at an instant (UTC seconds).
  public func offsetSeconds(atUTC utc: Int64) -> Int32 {
    let i = LocalZone.lastIndex(in: transitionsUTC, notAbove: utc)
    return i < 0 ? initialOffset : offsets[i]
  }

  // MARK: - Private

  /// 2101-01-01T00:00:00Z.
  private static let lastPrecomputedSecond: TimeInterval = 4_133_980_800

  private init(utcNamed name: String) {
    identifier = name
    initialOffset = 0
    transitionsUTC = []
    offsets = []
    localSwitches = []
  }

  /// The offset a local wall-clock time is read with (see the type's gap and overlap rules).
  private func offset(atLocal local: Int64) -> Int32 {
    if localSwitches.isEmpty { return initialOffset }
    let i = LocalZone.lastIndex(in: localSwitches, notAbove: local)
    return i < 0 ? initialOffset : offsets[i]
  }

  /// Index of the last element `<= value` in an ascending array, or -1.
  private static func lastIndex(in sorted: [Int64], notAbove value: Int64) -> Int {
    sorted.withUnsafeBufferPointer { a in
      var low = 0
      var high = a.count  // answer is in low-1 ..< high
      while low < high {
        let mid = (low &+ high) >> 1
        if a[mid] <= value { low = mid + 1 } else { high = mid }
      }
      return low - 1
    }
  }
}

/// Why a time zone could not be created.
public enum LocalZoneError: Error, Equatable, CustomStringConvertible {
  /// The identifier is not an IANA time zone name known to this system.
  case unknownIdentifier(String)

  public var description: String {
    switch self {
    case .unknownIdentifier(let id):
      return
        "unknown time zone '\(id)'; use an IANA identifier such as 'UTC', 'Europe/Berlin' or 'Europe/Moscow' (list them with `timedatectl list-timezones`)"
    }
  }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (negative before
/// it), by Howard Hinnant's `days_from_civil`. `month` is 1–12, `day` 1–31; the date is not
/// validated.
@inlinable
public func daysFromCivil(year: Int, month: Int, day: Int) -> Int64 {
  let y = Int64(month <= 2 ? year - 1 : year)
  let era = (y >= 0 ? y : y - 399) / 400
  let yearOfEra = y - era * 400  // [0, 399]
  let m = Int64(month)
  let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1  // [0, 365]
  let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear  // [0, 146096]
  return era * 146_097 + dayOfEra - 719_468
}
