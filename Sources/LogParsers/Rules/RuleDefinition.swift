/// A parsing rule as the configuration states it, before compilation. Plain data: the
/// configuration loader fills it from YAML, `CompiledRule` validates and compiles it, and its
/// errors name the field (`event.status`) so the loader can point at the file's line.
public struct RuleDefinition: Sendable {
  public enum Matcher: Sendable {
    /// A PCRE2 pattern with named groups and `%{NAME:capture}` sub-patterns.
    case pattern(String)
    /// The record is a JSON object: capture name → JSON pointer.
    case json([(capture: String, pointer: String)])
    /// The record is `key=value` pairs: capture name → key.
    case logfmt([(capture: String, key: String)])
    /// A message body in XML: capture name → XML path (`/m:Job/@id`, see `XMLPath`).
    case xml([(capture: String, path: String)])
  }

  /// What only rules of queue sources have: which messages, how to read the body, where the
  /// time comes from.
  public struct MessageOptions: Sendable {
    public var when: MessageSelector?
    public var body: BodyFormat = .auto
    /// capture name → `/properties/<name>` or `/headers/<name>`.
    public var fields: [(capture: String, pointer: String)] = []
    /// XML namespace prefix → URI, for the prefixes of `xml:` paths.
    public var namespaces: [String: String] = [:]
    public init() {}
  }

  public var name: String
  public var sources: [String]
  public var matcher: Matcher
  /// For structured rules: capture → pattern its value must match (its named groups become captures).
  public var whereClauses: [(capture: String, pattern: String)]
  public var timestampField: String
  public var timestampFormat: String
  /// Overrides the source's zone for timestamps without an offset.
  public var timezone: String?
  public var event: EventTemplate?
  public var link: LinkTemplate?
  public var timeSource: TimeSource = .field
  public var message: MessageOptions?

  public init(
    name: String, sources: [String], matcher: Matcher,
    whereClauses: [(capture: String, pattern: String)] = [], timestampField: String = "ts",
    timestampFormat: String = "iso8601", timezone: String? = nil, event: EventTemplate? = nil,
    link: LinkTemplate? = nil
  ) {
    self.name = name
    self.sources = sources
    self.matcher = matcher
    self.whereClauses = whereClauses
    self.timestampField = timestampField
    self.timestampFormat = timestampFormat
    self.timezone = timezone
    self.event = event
    self.link = link
  }
}

/// What a matched record says, as templates over captures (`${capture}`).
public struct EventTemplate: Sendable {
  public var orderID: String?
  public var aliasKind: String?
  public var aliasKey: String?
  public var kind: String?
  public var status: String?
  public var step: String?
  public var name: String?
  public var userID: String?
  public var attributes: [(key: String, value: String)]

  public init(
    orderID: String? = nil, aliasKind: String? = nil, aliasKey: String? = nil,
    kind: String? = nil, status: String? = nil, step: String? = nil, name: String? = nil,
    userID: String? = nil, attributes: [(key: String, value: String)] = []
  ) {
    self.orderID = orderID
    self.aliasKind = aliasKind
    self.aliasKey = aliasKey
    self.kind = kind
    self.status = status
    self.step = step
    self.name = name
    self.userID = userID
    self.attributes = attributes
  }
}

/// Binds an alias key (`kind:key`) to an order.
public struct LinkTemplate: Sendable {
  public var kind: String
  public var key: String
  public var orderID: String
  public init(kind: String, key: String, orderID: String) {
    self.kind = kind
    self.key = key
    self.orderID = orderID
  }
}

/// A rule that cannot be compiled. `field` is the dotted path of the offending key inside the
/// rule (`pattern`, `event.status`, `timestamp.format`) so the caller can name its line.
public struct RuleCompileError: Error, CustomStringConvertible, Sendable {
  public var rule: String
  public var field: String
  public var message: String
  public init(rule: String, field: String, message: String) {
    self.rule = rule
    self.field = field
    self.message = message
  }
  public var description: String { "rule '\(rule)': \(field): \(message)" }
}
