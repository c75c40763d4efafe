import TraceBridgeCore

/// A validated rule: patterns compiled, templates bound to capture slots. Immutable and
/// shareable; records are evaluated through a per-thread `RuleEvaluator`.
public final class CompiledRule: Sendable {
  public let name: String
  public let sources: [String]
  let kind: MatcherKind
  let pattern: CompiledPattern?
  /// pattern rules: slot → group number.
  let groupForSlot: [Int]
  /// json rules: slot → JSON pointer tokens; logfmt rules: slot → key.
  let structuredFields: [(slot: Int, path: [String])]
  let whereClauses: [WhereClause]
  let slotNames: [String]
  /// Slots whose text any template needs.
  let neededSlots: [Int]
  let timestampSlot: Int
  let timestampFormat: TimestampFormat
  let zone: LocalZone?
  let zoneName: String?
  let event: CompiledEvent?
  let link: CompiledLink?
  /// xml rules: slot → compiled path.
  let xmlFields: [(slot: Int, path: XMLPath)]
  /// Queue sources: slot → property or header.
  let messageFields: [(slot: Int, field: MessageField)]
  let selector: MessageSelector?
  let bodyFormat: BodyFormat
  let timeSource: TimeSource

  enum MatcherKind: Sendable { case pattern, json, logfmt, xml }

  /// The body format a message must have for this rule (with `body: auto`).
  var naturalFormat: BodyFormat {
    switch kind {
    case .json: .json
    case .xml: .xml
    case .pattern, .logfmt: .text
    }
  }

  struct WhereClause: Sendable {
    let slot: Int
    let pattern: CompiledPattern
    let groupSlots: [(group: Int, slot: Int)]
  }

  struct CompiledEvent: Sendable {
    let orderID: Template?
    let aliasKind: String?
    let aliasKey: Template?
    let kind: StageKind
    let status: Template?
    let step: Template?
    let name: Template?
    let userID: Template?
    let attributes: [(key: String, value: Template)]
  }

  struct CompiledLink: Sendable {
    let kind: String
    let key: Template
    let orderID: Template
  }

  public convenience init(_ def: RuleDefinition, library: PatternLibrary) throws(RuleCompileError) {
    try self.init(def, library: library, sourceZones: [:])
  }

  /// Compiles `def`. `library` expands `%{NAME}`; errors name the offending field.
  public init(
    _ def: RuleDefinition, library: PatternLibrary, sourceZones: [String: LocalZone]
  ) throws(RuleCompileError) {
    func fail(_ field: String, _ message: String) -> RuleCompileError {
      RuleCompileError(rule: def.name, field: field, message: message)
    }
    name = def.name
    sources = def.sources
    var slotNames: [String] = []
    func slot(_ name: String) -> Int {
      if let i = slotNames.firstIndex(of: name) { return i }
      slotNames.append(name)
      return slotNames.count - 1
    }
    var groupForSlot: [Int] = []
    var structured: [(slot: Int, path: [String])] = []
    var xmlFields: [(slot: Int, path: XMLPath)] = []
    switch def.matcher {
    case .pattern(let text):
      kind = .pattern
      let expanded: String
      do { expanded = try library.expand(text) } catch { throw fail("pattern", error.description) }
      let compiled: CompiledPattern
      do { compiled = try CompiledPattern(expanded) } catch {
        throw fail("pattern", error.description)
      }
      pattern = compiled
      for (number, groupName) in compiled.groupNames.enumerated() {
        guard let groupName else { continue }
        let s = slot(groupName)
        while groupForSlot.count <= s { groupForSlot.append(-1) }
        groupForSlot[s] = number
      }
    case .json(let fields):
      kind = .json
      pattern = nil
      if fields.isEmpty { throw fail("json", "name at least one field: capture: /json/pointer") }
      for field in fields {
        guard field.pointer.isEmpty || field.pointer.hasPrefix("/") else {
          throw fail(
            "json.\(field.capture)",
            "'\(field.pointer)' is not a JSON pointer; write it like /context/orderId")
        }
        let tokens = field.pointer.split(separator: "/", omittingEmptySubsequences: false)
          .dropFirst()
          .map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
          }
        structured.append((slot(field.capture), tokens))
      }
    case .logfmt(let fields):
      kind = .logfmt
      pattern = nil
      if fields.isEmpty { throw fail("logfmt", "name at least one field: capture: key") }
      for field in fields { structured.append((slot(field.capture), [field.key])) }
    case .xml(let fields):
      kind = .xml
      pattern = nil
      if fields.isEmpty {
        throw fail("xml", "name at least one field: capture: /Root/Element/@attribute")
      }
      for field in fields {
        do {
          xmlFields.append(
            (
              slot(field.capture),
              try XMLPath(field.path, namespaces: def.message?.namespaces ?? [:])
            ))
        } catch {
          throw fail("xml.\(field.capture)", "'\(field.path)': \(error)")
        }
      }
    }
    var messageFields: [(slot: Int, field: MessageField)] = []
    for f in def.message?.fields ?? [] {
      guard let field = MessageField(pointer: f.pointer) else {
        throw fail(
          "message.\(f.capture)",
          "'\(f.pointer)' is neither /properties/<name> (\(MessageProperty.allCases.map(\.rawValue).joined(separator: ", "))) nor /headers/<name>"
        )
      }
      messageFields.append((slot(f.capture), field))
    }
    if let body = def.message?.body, body != .auto {
      let natural: BodyFormat = kind == .json ? .json : kind == .xml ? .xml : .text
      if body != natural {
        throw fail(
          "body",
          "a \(kind == .pattern ? "pattern" : "\(kind)") rule reads the body as \(natural.rawValue), not \(body.rawValue); use body: \(natural.rawValue) or auto"
        )
      }
    }
    self.xmlFields = xmlFields
    self.messageFields = messageFields
    self.selector = def.message?.when
    self.bodyFormat = def.message?.body ?? .auto
    self.timeSource = def.timeSource
    var wheres: [WhereClause] = []
    for clause in def.whereClauses {
      guard kind != .pattern else {
        throw fail(
          "where",
          "'where' applies to json, logfmt and xml rules; put the condition into the pattern")
      }
      guard let s = slotNames.firstIndex(of: clause.capture) else {
        throw fail(
          "where.\(clause.capture)",
          "no field named '\(clause.capture)'; the rule defines: \(slotNames.joined(separator: ", "))"
        )
      }
      let compiled: CompiledPattern
      do { compiled = try CompiledPattern(try library.expand(clause.pattern)) } catch {
        throw fail("where.\(clause.capture)", "\(error)")
      }
      var groups: [(Int, Int)] = []
      for (number, groupName) in compiled.groupNames.enumerated() {
        if let groupName { groups.append((number, slot(groupName))) }
      }
      wheres.append(WhereClause(slot: s, pattern: compiled, groupSlots: groups))
    }
    while groupForSlot.count < slotNames.count { groupForSlot.append(-1) }
    self.groupForSlot = groupForSlot
    self.structuredFields = structured
    self.whereClauses = wheres
    self.slotNames = slotNames

    let known = slotNames
    func template(_ text: String?, _ field: String) throws(RuleCompileError) -> Template? {
      guard let text else { return nil }
      do {
        return try Template(text) { known.firstIndex(of: $0) }
      } catch {
        switch error {
        case .unclosed: throw fail(field, "unclosed '${' in '\(text)'")
        case .unknownCapture(let c):
          throw fail(
            field,
            "unknown capture '${\(c)}'; the rule defines: \(known.isEmpty ? "(no captures)" : known.joined(separator: ", "))"
          )
        }
      }
    }

    if def.timeSource != .field {
      timestampSlot = -1
    } else if let ts = slotNames.firstIndex(of: def.timestampField) {
      timestampSlot = ts
    } else {
      throw fail(
        "timestamp.field",
        "no capture named '\(def.timestampField)' holds the time; the rule defines: \(slotNames.isEmpty ? "(no captures)" : slotNames.joined(separator: ", "))"
      )
    }
    do { timestampFormat = try TimestampFormat(parsing: def.timestampFormat) } catch {
      throw fail("timestamp.format", error.description)
    }
    if let tz = def.timezone {
      do { zone = try LocalZone(identifier: tz) } catch {
        throw fail("timestamp.timezone", error.description)
      }
      zoneName = tz
    } else {
      zone = nil
      zoneName = nil
    }

    if let e = def.event {
      let kindText = e.kind ?? "log"
      guard let stage = StageKind(rawValue: kindText) else {
        throw fail(
          "event.kind",
          "unknown kind '\(kindText)'; use one of: \(StageKind.allCases.map(\.rawValue).joined(separator: ", "))"
        )
      }
      if e.orderID != nil && (e.aliasKind != nil || e.aliasKey != nil) {
        throw fail("event.alias", "give either order_id or alias, not both")
      }
      if (e.aliasKind == nil) != (e.aliasKey == nil) {
        throw fail(
          "event.alias", "an alias needs both kind and key: {kind: mes_job, key: '${job}'}")
      }
      if e.orderID == nil && e.aliasKind == nil && def.link == nil {
        throw fail(
          "event.order_id",
          "say which order the event belongs to: order_id: '${orderId}' or alias: {kind: …, key: …}"
        )
      }
      if stage == .statusChange && e.status == nil {
        throw fail(
          "event.status", "a status_change event needs status: (a literal or '${capture}')")
      }
      if (stage == .stepStart || stage == .stepEnd) && e.step == nil {
        throw fail("event.step", "a \(stage.rawValue) event needs step: (the step's name)")
      }
      var attributes: [(String, Template)] = []
      for (key, value) in e.attributes {
        guard let t = try template(value, "event.attributes.\(key)") else { continue }
        attributes.append((key, t))
      }
      event = CompiledEvent(
        orderID: try template(e.orderID, "event.order_id"), aliasKind: e.aliasKind,
        aliasKey: try template(e.aliasKey, "event.alias.key"), kind: stage,
        status: try template(e.status, "event.status"), step: try template(e.step, "event.step"),
        name: try template(e.name, "event.name"), userID: try template(e.userID, "event.user_id"),
        attributes: attributes)
    } else {
      event = nil
    }
    if let l = def.link {
      guard !l.kind.isEmpty, !l.kind.contains("${") else {
        throw fail("link.kind", "the alias kind is a fixed name such as mes_job")
      }
      link = CompiledLink(
        kind: l.kind, key: try template(l.key, "link.key")!,
        orderID: try template(l.orderID, "link.order_id")!)
    } else {
      link = nil
    }
    if event == nil && link == nil {
      throw fail("event", "the rule produces nothing; give it an event: and/or a link:")
    }
    var needed = Set<Int>()
    for t in [
      event?.orderID, event?.aliasKey, event?.status, event?.step, event?.name, event?.userID,
      link?.key, link?.orderID,
    ] {
      if let t { needed.formUnion(t.slots) }
    }
    for (_, t) in event?.attributes ?? [] { needed.formUnion(t.slots) }
    neededSlots = needed.sorted()
  }

  /// The capture names this rule defines.
  public var captureNames: [String] { slotNames }

  /// `pattern`, `json`, `logfmt` or `xml`.
  public var matcherKind: String {
    switch kind {
    case .pattern: "pattern"
    case .json: "json"
    case .logfmt: "logfmt"
    case .xml: "xml"
    }
  }

  /// The rule's pattern with every `%{NAME}` expanded; nil for structured rules.
  public var expandedPattern: String? { pattern?.pattern }
}

/// Why a record was set aside instead of becoming an event.
public enum RejectReason: String, Sendable, CaseIterable {
  case noRuleMatched = "no_rule_matched"
  case missingTimestamp = "missing_timestamp"
  case badTimestamp = "bad_timestamp"
  case missingOrderID = "missing_order_id"
  case missingStatus = "missing_status"
  case aliasExpired = "alias_link_never_seen"
  case outsideTimeRange = "outside_time_range"
}
