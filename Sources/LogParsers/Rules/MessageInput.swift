/// A message from a queue as the rules see it: its AMQP properties, headers and body bytes.
/// Plain data, free of any client library, so rules can be tested on sample messages.
public struct MessageInput: Sendable {
  public var queue: String
  public var exchange: String
  public var routingKey: String
  public var messageID: String?
  public var correlationID: String?
  /// The AMQP `timestamp` property: seconds since the epoch.
  public var timestamp: UInt64?
  public var type: String?
  public var appID: String?
  public var userID: String?
  public var contentType: String?
  public var contentEncoding: String?
  /// Header values as text (numbers and booleans written out), in the message's order.
  public var headers: [(String, String)]
  public var body: [UInt8]
  /// When the bridge received the message (UTC ns): the event time of `timestamp: {from: received}`.
  public var receivedUnixNano: Int64

  public init(
    queue: String = "", exchange: String = "", routingKey: String = "", messageID: String? = nil,
    correlationID: String? = nil, timestamp: UInt64? = nil, type: String? = nil,
    appID: String? = nil, userID: String? = nil, contentType: String? = nil,
    contentEncoding: String? = nil, headers: [(String, String)] = [], body: [UInt8],
    receivedUnixNano: Int64 = 0
  ) {
    self.queue = queue
    self.exchange = exchange
    self.routingKey = routingKey
    self.messageID = messageID
    self.correlationID = correlationID
    self.timestamp = timestamp
    self.type = type
    self.appID = appID
    self.userID = userID
    self.contentType = contentType
    self.contentEncoding = contentEncoding
    self.headers = headers
    self.body = body
    self.receivedUnixNano = receivedUnixNano
  }

  /// The property named as in `/properties/<name>` (and the envelope of `json:` rules).
  public func property(_ name: MessageProperty) -> String? {
    switch name {
    case .messageID: messageID
    case .correlationID: correlationID
    case .timestamp: timestamp.map { String($0) }
    case .type: type
    case .appID: appID
    case .userID: userID
    case .contentType: contentType
    case .contentEncoding: contentEncoding
    case .exchange: exchange
    case .routingKey: routingKey
    case .queue: queue
    }
  }

  public func header(_ name: String) -> String? {
    headers.first { $0.0 == name }?.1
  }

  /// The content type without parameters, lowercased (`application/xml`).
  var mediaType: String? {
    guard let c = contentType else { return nil }
    // The common case, a bare lowercase type (`application/json`), without splitting.
    if !c.isEmpty,
      c.utf8.allSatisfy({
        $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") && !(0x41...0x5A).contains($0)
      })
    {
      return c
    }
    let base = c.split(separator: ";", maxSplits: 1).first.map(String.init) ?? c
    let t = base.trimmingSpaces().lowercased()
    return t.isEmpty ? nil : t
  }

  /// The body's format: from the content type when it says, else from its first byte.
  public var detectedFormat: BodyFormat {
    if let t = mediaType {
      if t.hasSuffix("json") || t.hasSuffix("+json") { return .json }
      if t.hasSuffix("xml") || t.hasSuffix("+xml") { return .xml }
      if t.hasPrefix("text/") { return .text }
    }
    for b in body {
      switch b {
      case 0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF: continue  // whitespace, a UTF-8 BOM
      case UInt8(ascii: "{"), UInt8(ascii: "["): return .json
      case UInt8(ascii: "<"): return .xml
      default: return .text
      }
    }
    return .text
  }

  /// The charset the body is in and where that was read: the `content_encoding` property when it
  /// names a charset, the XML prolog's `encoding=`, the content type's `charset=`; nil when none
  /// says (the source's `encoding` applies).
  func declaredCharset(lookAtProlog: Bool) -> (name: String, from: String)? {
    if let e = contentEncoding?.trimmingSpaces(), !e.isEmpty,
      !Self.transferCodings.contains(e.lowercased())
    {
      return (e, "content_encoding")
    }
    if lookAtProlog, let e = Self.prologEncoding(body) { return (e, "the XML prolog") }
    if let c = contentType, c.utf8.contains(UInt8(ascii: ";")) {
      for param in c.split(separator: ";").dropFirst() {
        let kv = param.split(separator: "=", maxSplits: 1)
        if kv.count == 2, kv[0].trimmingSpaces().lowercased() == "charset" {
          let v = kv[1].trimmingSpaces().trimmingCharacters("\"'")
          if !v.isEmpty { return (v, "the content type") }
        }
      }
    }
    return nil
  }

  /// content_encoding values that are not charsets (RFC 9110 content codings).
  static let transferCodings: Set<String> = [
    "gzip", "x-gzip", "deflate", "compress", "br", "zstd", "identity",
  ]

  /// `encoding="…"` of an `<?xml …?>` declaration at the start of `body` (ASCII-compatible
  /// charsets only: the declaration itself must be readable).
  static func prologEncoding(_ body: [UInt8]) -> String? {
    var i = 0
    if body.count >= 3 && body[0] == 0xEF && body[1] == 0xBB && body[2] == 0xBF { i = 3 }
    let prefix = Array("<?xml".utf8)
    guard body.count >= i + prefix.count, Array(body[i..<(i + prefix.count)]) == prefix else {
      return nil
    }
    guard let end = body[i...].prefix(512).firstIndex(of: UInt8(ascii: ">")) else { return nil }
    let decl = String(decoding: body[i..<end], as: UTF8.self)
    guard let r = decl.range(of: "encoding") else { return nil }
    var rest = decl[r.upperBound...].drop { $0 == " " }
    guard rest.first == "=" else { return nil }
    rest = rest.dropFirst().drop { $0 == " " }
    guard let q = rest.first, q == "\"" || q == "'" else { return nil }
    let value = rest.dropFirst().prefix { $0 != q }
    return value.isEmpty ? nil : String(value)
  }
}

/// The AMQP properties a rule can read (`/properties/<name>`).
public enum MessageProperty: String, Sendable, CaseIterable {
  case messageID = "message_id"
  case correlationID = "correlation_id"
  case timestamp
  case type
  case appID = "app_id"
  case userID = "user_id"
  case contentType = "content_type"
  case contentEncoding = "content_encoding"
  case exchange
  case routingKey = "routing_key"
  case queue
}

/// How a rule reads a message body.
public enum BodyFormat: String, Sendable, CaseIterable {
  /// The format the message says (content type) or shows (first byte) must be the rule's own.
  case auto
  case json
  case xml
  case text
}

/// Where a rule takes its event time from.
public enum TimeSource: String, Sendable, CaseIterable {
  /// A capture (`timestamp.field`), parsed with `timestamp.format` in the rule's zone.
  case field
  /// The AMQP `timestamp` property (seconds): when the sender published.
  case amqp
  /// When the bridge received the message.
  case received
}

/// A field of the message outside the body: `/properties/<name>` or `/headers/<name>`.
public enum MessageField: Sendable, Equatable {
  case property(MessageProperty)
  case header(String)

  /// Parses `/properties/type`, `/headers/x-kind`.
  public init?(pointer: String) {
    if pointer.hasPrefix("/properties/"),
      let p = MessageProperty(rawValue: String(pointer.dropFirst(12)))
    {
      self = .property(p)
    } else if pointer.hasPrefix("/headers/"), pointer.count > 9 {
      self = .header(String(pointer.dropFirst(9)))
    } else {
      return nil
    }
  }

  func value(in m: MessageInput) -> String? {
    switch self {
    case .property(let p): m.property(p)
    case .header(let h): m.header(h)
    }
  }
}

/// Which messages a rule applies to, decided before the body is read. Every condition given
/// must hold.
public struct MessageSelector: Sendable {
  public var queue: String?
  public var exchange: String?
  /// An AMQP topic pattern: `*` one word, `#` zero or more words (`mes.job.*`, `order.#`).
  public var routingKey: String?
  public var type: String?
  public var appID: String?
  /// Compared without parameters (`; charset=…`), ignoring case.
  public var contentType: String?
  public var headers: [(String, String)]

  public init(
    queue: String? = nil, exchange: String? = nil, routingKey: String? = nil, type: String? = nil,
    appID: String? = nil, contentType: String? = nil, headers: [(String, String)] = []
  ) {
    self.queue = queue
    self.exchange = exchange
    self.routingKey = routingKey
    self.type = type
    self.appID = appID
    self.contentType = contentType
    self.headers = headers
  }

  func matches(_ m: MessageInput) -> Bool {
    if let q = queue, q != m.queue { return false }
    if let e = exchange, e != m.exchange { return false }
    if let r = routingKey, !Self.topicMatches(pattern: r, key: m.routingKey) { return false }
    if let t = type, t != m.type { return false }
    if let a = appID, a != m.appID { return false }
    if let c = contentType, c.lowercased() != m.mediaType { return false }
    for (k, v) in headers where m.header(k) != v { return false }
    return true
  }

  /// AMQP topic matching: words split on `.`, `*` matches one word, `#` zero or more.
  public static func topicMatches(pattern: String, key: String) -> Bool {
    let p = pattern.split(separator: ".", omittingEmptySubsequences: false)
    let k = key.split(separator: ".", omittingEmptySubsequences: false)
    func match(_ i: Int, _ j: Int) -> Bool {
      if i == p.count { return j == k.count }
      if p[i] == "#" {
        var jj = j
        while jj <= k.count {
          if match(i + 1, jj) { return true }
          jj += 1
        }
        return false
      }
      guard j < k.count else { return false }
      return (p[i] == "*" || p[i] == k[j]) && match(i + 1, j + 1)
    }
    return match(0, 0)
  }
}

extension StringProtocol {
  func trimmingSpaces() -> String {
    trimmingCharacters(" \t")
  }

  func trimmingCharacters(_ set: String) -> String {
    let chars = Set(set)
    var s = Substring(self)
    while let f = s.first, chars.contains(f) { s = s.dropFirst() }
    while let l = s.last, chars.contains(l) { s = s.dropLast() }
    return String(s)
  }
}
