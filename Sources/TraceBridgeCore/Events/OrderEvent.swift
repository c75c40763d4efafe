/// The one type every source produces: something that happened to an order.
///
/// An event is keyed by its order id, or by an alias (an MES job id, a configurator file id)
/// that a link event binds to an order later. `sourceKey` is stable across replays, restarts
/// and backfills of the same input: span ids are derived from it, so the same input always
/// yields byte-identical spans.
public struct OrderEvent: Sendable, Equatable, Codable {
  public var key: OrderKey
  public var service: String
  public var kind: StageKind
  /// The new status, for `statusChange`.
  public var status: String?
  /// The step's name, for `stepStart` / `stepEnd`.
  public var step: String?
  /// A human name for span events (defaults to the rule's name).
  public var name: String
  /// Event time, UTC nanoseconds since the Unix epoch.
  public var timeUnixNano: Int64
  /// How the time was read: `offset` when the text carried its own offset, else the IANA zone applied.
  public var zoneRule: String
  public var userID: String?
  public var attributes: [Attribute]
  public var sourceKey: SourceKey
  /// The rule that produced the event.
  public var rule: String
  /// Set when this event binds an alias to an order.
  public var link: AliasLink?

  public init(
    key: OrderKey, service: String, kind: StageKind, status: String? = nil,
    step: String? = nil, name: String, timeUnixNano: Int64, zoneRule: String,
    userID: String? = nil, attributes: [Attribute] = [], sourceKey: SourceKey,
    rule: String, link: AliasLink? = nil
  ) {
    self.key = key
    self.service = service
    self.kind = kind
    self.status = status
    self.step = step
    self.name = name
    self.timeUnixNano = timeUnixNano
    self.zoneRule = zoneRule
    self.userID = userID
    self.attributes = attributes
    self.sourceKey = sourceKey
    self.rule = rule
    self.link = link
  }
}

/// What an event is keyed by.
public enum OrderKey: Sendable, Hashable, Codable {
  case order(String)
  case alias(AliasKey)
}

/// An alternative key of an order, such as `mes_job:J-00077`.
public struct AliasKey: Sendable, Hashable, Codable, CustomStringConvertible {
  public var kind: String
  public var key: String
  public init(kind: String, key: String) {
    self.kind = kind
    self.key = key
  }
  public var description: String { "\(kind):\(key)" }
}

/// Binds an alias to an order.
public struct AliasLink: Sendable, Equatable, Codable {
  public var alias: AliasKey
  public var orderID: String
  public init(alias: AliasKey, orderID: String) {
    self.alias = alias
    self.orderID = orderID
  }
}

/// The kind of stage an event reports.
public enum StageKind: String, Sendable, Codable, CaseIterable {
  case statusChange = "status_change"
  case stepStart = "step_start"
  case stepEnd = "step_end"
  case busPublish = "bus_publish"
  case busConsume = "bus_consume"
  case dbWrite = "db_write"
  case fileLink = "file_link"
  case log
}

/// Where an event came from, stable across replays: a source name, the identity of the
/// stream inside it (a file's content fingerprint, or a queue), and a position (a byte offset
/// in the decompressed file, or a message id hash).
public struct SourceKey: Sendable, Hashable, Codable, CustomStringConvertible {
  public var source: String
  public var stream: UInt64
  public var position: UInt64
  public init(source: String, stream: UInt64, position: UInt64) {
    self.source = source
    self.stream = stream
    self.position = position
  }
  public var description: String {
    var out: [UInt8] = []
    appendDescription(to: &out)
    return String(decoding: out, as: UTF8.self)
  }

  /// Appends ``description``'s UTF-8 bytes, `source/<stream in hex>@<position>` (no
  /// intermediate strings: the live commit writes one for every event).
  public func appendDescription(to out: inout [UInt8]) {
    out.append(contentsOf: source.utf8)
    out.append(UInt8(ascii: "/"))
    Self.appendDigits(stream, radix: 16, to: &out)
    out.append(UInt8(ascii: "@"))
    Self.appendDigits(position, radix: 10, to: &out)
  }

  /// `value` in `radix` (lowercase hex digits), as `String(value, radix:)` writes it.
  public static func appendDigits(_ value: UInt64, radix: UInt64, to out: inout [UInt8]) {
    let start = out.count
    var v = value
    repeat {
      let x = UInt8(v % radix)
      out.append(x < 10 ? 0x30 + x : 0x57 + x)
      v /= radix
    } while v > 0
    out[start...].reverse()
  }

  /// A 64-bit identity of the key (SipHash-2-4 under a fixed key): what the live pipeline
  /// keeps and stores of the queue messages it has committed, to recognise redeliveries.
  public var identity: UInt64 {
    var h = SipHasher(k0: 0x7365_656e_6b65_7931, k1: 0x7472_6163_6562_7264)
    h.append(utf8: source)
    h.append(byte: 0)
    h.append(word: stream)
    h.append(word: position)
    return h.finish()
  }

  /// Parses ``description``.
  public init?(parsing text: String) {
    guard let at = text.lastIndex(of: "@"), let slash = text[..<at].lastIndex(of: "/"),
      let stream = UInt64(text[text.index(after: slash)..<at], radix: 16),
      let position = UInt64(text[text.index(after: at)...])
    else { return nil }
    self.init(source: String(text[..<slash]), stream: stream, position: position)
  }
}
