import TraceBridgeCore

/// What a queue message became.
public struct MessageEvaluation {
  public enum Outcome {
    case matched(rule: Int, event: OrderEvent)
    /// A rule matched but the message cannot become an event (no time, no order id).
    case rejected(rule: Int, reason: RejectReason)
    /// No rule maps the message; why, for the dead-letter header.
    case unmapped(String)
  }
  public var outcome: Outcome
  /// Invalid byte sequences in the body, replaced by U+FFFD.
  public var invalidBytes: Int
  /// The charset the body was read in (empty when no rule read the body).
  public var charset: String
  /// A charset the message declared that is unknown here (the source's was used instead).
  public var charsetProblem: String?
  /// The format the deciding rule read the body in.
  public var format: BodyFormat?
}

/// What a record became.
public enum RuleOutcome {
  /// `rule` is the index of the rule in the rule set.
  case matched(rule: Int, event: OrderEvent)
  /// A rule matched but the record cannot become an event (no time, no order id).
  case rejected(rule: Int, reason: RejectReason)
  case unmatched
}

/// Evaluates the rules of one source against records, on one thread. Owns the PCRE2 match
/// data of every pattern it uses and scratch buffers, so evaluation allocates only for the
/// event it returns.
public final class RuleEvaluator {
  public let source: SourceDefinition
  private let rules: [CompiledRule]
  private let ruleIndices: [Int]
  private let matchers: [PatternMatcher?]
  private let whereMatchers: [[PatternMatcher]]
  private var values: [[String?]]
  /// All JSON pointers of the source's JSON rules, read in one pass per record, on demand.
  private let jsonScanner: JSONFieldScanner
  /// json rules: per rule, per field, the index of its pointer in `jsonScanner`.
  private let jsonFieldIndex: [[Int]]
  private var jsonValues: [String?] = []
  /// The properties and headers the JSON rules point at: only those go into a message's
  /// envelope (writing all of them for every message was a tenth of a queue drain's mapping).
  private let envelopeParts: EnvelopeParts
  private var jsonState = LogfmtState.unparsed
  /// The current record's `key=value` pairs as byte ranges; parsed once per record, on demand.
  private var logfmtPairs: [LogfmtPair] = []
  private var logfmtState = LogfmtState.unparsed
  /// logfmt rules: per rule, per field, the key's bytes.
  private let logfmtKeys: [[[UInt8]]]

  private enum LogfmtState { case unparsed, parsed, notLogfmt }  // also for JSON

  /// `rules` are the source's rules in order; `ruleIndices` their indices in the rule set.
  public init(source: SourceDefinition, rules: [CompiledRule], ruleIndices: [Int]) {
    self.source = source
    self.rules = rules
    self.ruleIndices = ruleIndices
    matchers = rules.map { $0.pattern.map(PatternMatcher.init) }
    whereMatchers = rules.map { $0.whereClauses.map { PatternMatcher($0.pattern) } }
    values = rules.map { [String?](repeating: nil, count: $0.slotNames.count) }
    var pointers: [[String]] = []
    jsonFieldIndex = rules.map { rule in
      guard rule.kind == .json else { return [] }
      return rule.structuredFields.map { field in
        if let k = pointers.firstIndex(of: field.path) { return k }
        pointers.append(field.path)
        return pointers.count - 1
      }
    }
    jsonScanner = JSONFieldScanner(pointers: pointers)
    envelopeParts = EnvelopeParts(pointers: pointers)
    logfmtKeys = rules.map { rule in
      rule.kind == .logfmt ? rule.structuredFields.map { Array($0.path[0].utf8) } : []
    }
  }

  /// Tries the source's rules in order on `text` (valid UTF-8); the first that matches decides.
  public func evaluate(_ text: UnsafeBufferPointer<UInt8>, sourceKey: SourceKey) -> RuleOutcome {
    jsonState = .unparsed
    logfmtState = .unparsed
    for i in rules.indices {
      let rule = rules[i]
      let matched: Bool
      switch rule.kind {
      case .pattern: matched = matchPattern(i, text)
      case .json: matched = matchJSON(i, text)
      case .logfmt: matched = matchLogfmt(i, text)
      case .xml: matched = false  // message bodies only (the configuration sees to it)
      }
      guard matched else { continue }
      return build(i, text, sourceKey, message: nil)
    }
    return .unmatched
  }

  // MARK: - Messages

  /// Tries the source's rules on a queue message: each rule whose `when` selects the message
  /// and whose body format fits reads the body (JSON through the `{properties, headers, body}`
  /// envelope, XML through its paths, text through its pattern); the first that matches
  /// decides. The body is decoded to UTF-8 once, from the charset the message declares
  /// (`content_encoding`, the XML prolog, the content type's `charset=`) or else the source's
  /// `encoding`.
  public func evaluate(message input: MessageInput, sourceKey: SourceKey) -> MessageEvaluation {
    jsonState = .unparsed
    logfmtState = .unparsed
    var m = input
    if let coding = m.contentEncoding?.lowercased(), ["br", "zstd", "compress"].contains(coding) {
      return MessageEvaluation(
        outcome: .unmapped(
          "content_encoding \(coding) is not supported: only gzip and deflate bodies are decompressed"
        ), invalidBytes: 0, charset: "")
    }
    if let coding = m.contentEncoding?.lowercased(), Self.compressed.contains(coding) {
      switch Inflate.inflate(m.body, limit: Self.maxInflatedBodyBytes) {
      case .success(let body):
        m.body = body
        // The charset comes from the prolog, the content type or the source.
        m.contentEncoding = nil
      case .failure(let why):
        return MessageEvaluation(
          outcome: .unmapped("not \(coding): \(why)"), invalidBytes: 0, charset: "")
      }
    }
    let detected = m.detectedFormat
    var result = MessageEvaluation(outcome: .unmapped(""), invalidBytes: 0, charset: "")
    var text: [UInt8]? = nil
    var envelope: [UInt8]? = nil
    var xml: Result<XMLParsed, XMLBodyError>? = nil
    var tried: [Int] = []
    /// Formats of rules `when` selected but the body's format ruled out.
    var otherFormats: Set<BodyFormat> = []
    var charsetProblem: String?

    func decodedBody() -> [UInt8] {
      if let text { return text }
      var decoder = source.decoder
      if let (name, from) = m.declaredCharset(lookAtProlog: detected == .xml) {
        if let d = namedDecoder(name) {
          decoder = d
        } else {
          charsetProblem = "unknown charset '\(name)' in \(from); read as \(source.decoder.charset)"
        }
      }
      result.charset = decoder.charset
      // Valid UTF-8 from a UTF-8 source, without a byte order mark: the body as it is,
      // without a copy (most JSON bodies).
      if !m.body.starts(with: [0xEF, 0xBB, 0xBF]),
        m.body.withUnsafeBufferPointer({ decoder.passesThrough($0) })
      {
        text = m.body
        return m.body
      }
      var out: [UInt8] = []
      out.reserveCapacity(m.body.count + m.body.count / 4)
      var body = m.body[...]
      // A UTF-8 byte order mark is not text.
      if decoder.isUTF8, body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
      result.invalidBytes = body.withUnsafeBufferPointer { decoder.decode($0, into: &out) }
      text = out
      return out
    }

    for i in rules.indices {
      let rule = rules[i]
      if let selector = rule.selector, !selector.matches(m) { continue }
      let format = rule.bodyFormat == .auto ? detected : rule.bodyFormat
      guard format == rule.naturalFormat else {
        otherFormats.insert(rule.naturalFormat)
        continue
      }
      tried.append(i)
      var matched = false
      switch rule.kind {
      case .json:
        if envelope == nil {
          envelope = Self.envelope(m, body: decodedBody(), parts: envelopeParts)
        }
        matched = envelope!.withUnsafeBufferPointer { matchJSON(i, $0) }
      case .xml:
        if xml == nil {
          let body = decodedBody()
          let parser = xmlParser ?? XMLBodyParser()
          xmlParser = parser
          xml = body.withUnsafeBufferPointer { buf in
            Result { () throws(XMLBodyError) -> XMLParsed in try parser.parse(buf) }
          }
        }
        if case .success(let doc) = xml! {
          matched = true
          for (slot, path) in rule.xmlFields {
            guard let v = doc.value(path) else {
              matched = false
              break
            }
            values[i][slot] = v
          }
          if matched { matched = applyWhere(i) }
        }
      case .pattern:
        matched = decodedBody().withUnsafeBufferPointer { matchPattern(i, $0) }
      case .logfmt:
        matched = decodedBody().withUnsafeBufferPointer { matchLogfmt(i, $0) }
      }
      guard matched else { continue }
      // Properties and headers last: a pattern's match clears the slots it has no group for.
      var complete = true
      for (slot, field) in rule.messageFields {
        guard let v = field.value(in: m) else {
          complete = false
          break
        }
        values[i][slot] = v
      }
      guard complete else { continue }
      let outcome = (text ?? []).withUnsafeBufferPointer { build(i, $0, sourceKey, message: m) }
      switch outcome {
      case .matched(let rule, let event):
        result.outcome = .matched(rule: rule, event: event)
        result.format = format
      case .rejected(let rule, let reason): result.outcome = .rejected(rule: rule, reason: reason)
      case .unmatched: continue
      }
      result.charsetProblem = charsetProblem
      return result
    }
    result.charsetProblem = charsetProblem
    let described = "content type \(m.contentType ?? "(none)"), routing key '\(m.routingKey)'"
    if tried.isEmpty, otherFormats == [.json] || otherFormats == [.xml] {
      let name = otherFormats == [.json] ? "JSON" : "XML"
      result.outcome = .unmapped(
        "not \(name): the body is \(detected.rawValue) (\(described)) and the rules that select it read \(name); body: \(name.lowercased()) reads it as \(name) whatever its content type"
      )
    } else if tried.isEmpty {
      result.outcome = .unmapped(
        "no rule matched the message: none selects it by when and body format (\(detected.rawValue) body, \(described))"
      )
    } else if case .failure(let e) = xml, tried.allSatisfy({ rules[$0].kind == .xml }) {
      result.outcome = .unmapped(e.description)
    } else if jsonState == .notLogfmt, tried.allSatisfy({ rules[$0].kind == .json }) {
      result.outcome = .unmapped("not JSON: the body does not parse as a JSON document")
    } else {
      let names = tried.map { rules[$0].name }.joined(separator: ", ")
      result.outcome = .unmapped("no rule matched the message (tried \(names); \(described))")
    }
    return result
  }

  /// content_encoding values whose bodies are decompressed before anything reads them.
  static let compressed: Set<String> = ["gzip", "x-gzip", "deflate"]
  /// A compressed body may inflate to this many bytes at most (16 MiB).
  public static let maxInflatedBodyBytes = 16 << 20

  private var xmlParser: XMLBodyParser?
  private var namedDecoders: [String: CharsetDecoder?] = [:]

  private func namedDecoder(_ name: String) -> CharsetDecoder? {
    let key = name.lowercased()
    if let d = namedDecoders[key] { return d }
    let d = try? CharsetDecoder(charset: name)
    namedDecoders[key] = d
    return d
  }

  /// Which properties and headers an envelope needs: those some pointer names, all of them
  /// where a pointer takes the whole object (`/properties`, `/headers` or the root).
  struct EnvelopeParts {
    var allProperties = false
    var properties: Set<String> = []
    var allHeaders = false
    var headers: Set<String> = []

    init(pointers: [[String]]) {
      for p in pointers {
        guard let first = p.first, !(p.count == 1 && first.isEmpty) else {
          allProperties = true  // the root: the whole envelope
          allHeaders = true
          continue
        }
        switch first {
        case "properties":
          if p.count > 1 { properties.insert(p[1]) } else { allProperties = true }
        case "headers":
          if p.count > 1 { headers.insert(p[1]) } else { allHeaders = true }
        default: break
        }
      }
    }
  }

  /// `{"properties": {…}, "headers": {…}, "body": <body>}`: what `json:` rules point into,
  /// with the properties and headers of `parts`.
  static func envelope(_ m: MessageInput, body: [UInt8], parts: EnvelopeParts) -> [UInt8] {
    var doc: [UInt8] = []
    doc.reserveCapacity(body.count + 256)
    doc.append(contentsOf: #"{"properties":{"#.utf8)
    var first = true
    func prop(_ key: String, _ value: String?) {
      guard let value else { return }
      if !first { doc.append(0x2C) }
      first = false
      JSONText.appendString(&doc, key)
      doc.append(0x3A)
      JSONText.appendString(&doc, value)
    }
    for p in MessageProperty.allCases
    where parts.allProperties || parts.properties.contains(p.rawValue) {
      prop(p.rawValue, m.property(p))
    }
    doc.append(contentsOf: #"},"headers":{"#.utf8)
    first = true
    for (k, v) in m.headers where parts.allHeaders || parts.headers.contains(k) { prop(k, v) }
    doc.append(contentsOf: #"},"body":"#.utf8)
    if body.isEmpty { doc.append(contentsOf: "null".utf8) } else { doc.append(contentsOf: body) }
    doc.append(0x7D)
    return doc
  }

  // MARK: - Matching

  private func matchPattern(_ i: Int, _ text: UnsafeBufferPointer<UInt8>) -> Bool {
    let matcher = matchers[i]!
    guard matcher.matches(text) else { return false }
    let rule = rules[i]
    for slot in rule.neededSlots {
      let group = rule.groupForSlot[slot]
      if group >= 0, let r = matcher.range(ofGroup: group) {
        values[i][slot] = String(decoding: UnsafeBufferPointer(rebasing: text[r]), as: UTF8.self)
      } else {
        values[i][slot] = nil
      }
    }
    return true
  }

  private func matchJSON(_ i: Int, _ text: UnsafeBufferPointer<UInt8>) -> Bool {
    if jsonState == .unparsed {
      jsonState = jsonScanner.scan(text, into: &jsonValues) ? .parsed : .notLogfmt
    }
    guard jsonState == .parsed else { return false }
    let rule = rules[i]
    for (f, field) in rule.structuredFields.enumerated() {
      guard let value = jsonValues[jsonFieldIndex[i][f]] else { return false }
      values[i][field.slot] = value
    }
    return applyWhere(i)
  }

  private func matchLogfmt(_ i: Int, _ text: UnsafeBufferPointer<UInt8>) -> Bool {
    if logfmtState == .unparsed {
      logfmtState = Self.parseLogfmt(text, into: &logfmtPairs) ? .parsed : .notLogfmt
    }
    guard logfmtState == .parsed else { return false }
    let rule = rules[i]
    for (f, field) in rule.structuredFields.enumerated() {
      let key = logfmtKeys[i][f]
      guard let pair = logfmtPairs.first(where: { Self.equal(text, $0.key, key) }) else {
        return false
      }
      values[i][field.slot] = pair.value(in: text)
    }
    return applyWhere(i)
  }

  private func applyWhere(_ i: Int) -> Bool {
    let rule = rules[i]
    for (w, clause) in rule.whereClauses.enumerated() {
      guard var value = values[i][clause.slot] else { return false }
      let matcher = whereMatchers[i][w]
      let ok = value.withUTF8 { buf -> Bool in
        guard matcher.matches(buf) else { return false }
        for (group, slot) in clause.groupSlots {
          // A group that did not take part in this match leaves its capture empty
          // (never the previous record's value).
          values[i][slot] = matcher.range(ofGroup: group).map {
            String(decoding: UnsafeBufferPointer(rebasing: buf[$0]), as: UTF8.self)
          }
        }
        return true
      }
      if !ok { return false }
    }
    return true
  }

  // MARK: - Building the event

  private func build(
    _ i: Int, _ text: UnsafeBufferPointer<UInt8>, _ sourceKey: SourceKey, message: MessageInput?
  )
    -> RuleOutcome
  {
    let rule = rules[i]
    let index = ruleIndices[i]
    let zone = rule.zone ?? source.zone
    let time: Int64?
    var carriedOffset = false
    var fixedZoneRule: String?
    if rule.timeSource == .amqp {
      guard let t = message?.timestamp else {
        return .rejected(rule: index, reason: .missingTimestamp)
      }
      guard t < UInt64(Int64.max / 1_000_000_000) else {
        return .rejected(rule: index, reason: .badTimestamp)
      }
      time = Int64(t) * 1_000_000_000
      fixedZoneRule = "amqp_timestamp"
    } else if rule.timeSource == .received {
      time = message?.receivedUnixNano
      fixedZoneRule = "received"
    } else if rule.kind == .pattern {
      let group = rule.groupForSlot[rule.timestampSlot]
      guard group >= 0, let r = matchers[i]!.range(ofGroup: group), !r.isEmpty else {
        return .rejected(rule: index, reason: .missingTimestamp)
      }
      time = rule.timestampFormat.parse(
        UnsafeBufferPointer(rebasing: text[r]), zone: zone, carriedOffset: &carriedOffset)
    } else {
      guard let t = values[i][rule.timestampSlot], !t.isEmpty else {
        return .rejected(rule: index, reason: .missingTimestamp)
      }
      time = rule.timestampFormat.parse(t, zone: zone, carriedOffset: &carriedOffset)
    }
    guard let time else { return .rejected(rule: index, reason: .badTimestamp) }
    let v = values[i]

    var link: AliasLink? = nil
    if let l = rule.link {
      guard let key = l.key.render(v), let order = l.orderID.render(v) else {
        return .rejected(rule: index, reason: .missingOrderID)
      }
      link = AliasLink(alias: AliasKey(kind: l.kind, key: key), orderID: order)
    }
    let zoneRule =
      fixedZoneRule ?? (carriedOffset ? "offset" : (rule.zoneName ?? source.zone.identifier))
    guard let e = rule.event else {
      let link = link!
      return .matched(
        rule: index,
        event: OrderEvent(
          key: .order(link.orderID), service: source.service, kind: .fileLink,
          name: "\(link.alias.kind) \(link.alias.key) linked", timeUnixNano: time,
          zoneRule: zoneRule, attributes: [Attribute("tracebridge.alias", link.alias.description)],
          sourceKey: sourceKey, rule: rule.name, link: link))
    }
    let key: OrderKey
    if let t = e.orderID {
      guard let id = t.render(v) else { return .rejected(rule: index, reason: .missingOrderID) }
      key = .order(id)
    } else if let kind = e.aliasKind, let t = e.aliasKey {
      guard let k = t.render(v) else { return .rejected(rule: index, reason: .missingOrderID) }
      key = .alias(AliasKey(kind: kind, key: k))
    } else if let link {
      key = .order(link.orderID)
    } else {
      return .rejected(rule: index, reason: .missingOrderID)
    }
    var status: String? = nil
    if let t = e.status {
      guard let s = t.render(v) else { return .rejected(rule: index, reason: .missingStatus) }
      status = s
    }
    var attributes: [Attribute] = []
    attributes.reserveCapacity(e.attributes.count)
    for (k, t) in e.attributes {
      if let value = t.render(v) { attributes.append(Attribute(k, value)) }
    }
    return .matched(
      rule: index,
      event: OrderEvent(
        key: key, service: source.service, kind: e.kind, status: status, step: e.step?.render(v),
        name: e.name?.render(v) ?? rule.name, timeUnixNano: time, zoneRule: zoneRule,
        userID: e.userID?.render(v), attributes: attributes, sourceKey: sourceKey, rule: rule.name,
        link: link))
  }

  // MARK: - Structured records

  @inline(__always)
  static func equal(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ key: [UInt8]) -> Bool
  {
    guard range.count == key.count else { return false }
    var j = 0
    for k in range {
      if text[k] != key[j] { return false }
      j += 1
    }
    return true
  }

  /// Splits `key=value key2="quoted \"value\""` into pairs (a bare key has an empty value).
  /// Returns false at once when the record does not start with `key=` — most lines of a
  /// mixed log are not logfmt, and telling costs a few bytes, not a parse.
  static func parseLogfmt(_ text: UnsafeBufferPointer<UInt8>, into pairs: inout [LogfmtPair])
    -> Bool
  {
    pairs.removeAll(keepingCapacity: true)
    let n = text.count
    var i = 0
    while i < n && (text[i] == 0x20 || text[i] == 0x09) { i += 1 }
    var first = true
    while i < n {
      let keyStart = i
      while i < n && text[i] != 0x3D && text[i] != 0x20 && text[i] != 0x09 && text[i] != 0x22 {
        i += 1
      }
      let key = keyStart..<i
      if first {
        guard !key.isEmpty, i < n, text[i] == 0x3D else { return false }
        first = false
      }
      if i < n && text[i] == 0x3D {
        i += 1
        if i < n && text[i] == 0x22 {
          i += 1
          let valueStart = i
          var escaped = false
          while i < n && text[i] != 0x22 {
            if text[i] == 0x5C {
              escaped = true
              i += 1
            }
            i += 1
          }
          pairs.append(LogfmtPair(key: key, value: valueStart..<min(i, n), escaped: escaped))
          if i < n { i += 1 }
        } else {
          let valueStart = i
          while i < n && text[i] != 0x20 && text[i] != 0x09 { i += 1 }
          pairs.append(LogfmtPair(key: key, value: valueStart..<i, escaped: false))
        }
      } else if !key.isEmpty {
        pairs.append(LogfmtPair(key: key, value: i..<i, escaped: false))
      } else {
        i += 1  // a stray quote
      }
      while i < n && (text[i] == 0x20 || text[i] == 0x09) { i += 1 }
    }
    return true
  }
}

/// One `key=value` of a logfmt record, as byte ranges into the record.
struct LogfmtPair {
  var key: Range<Int>
  var value: Range<Int>
  /// The quoted value contains backslash escapes.
  var escaped: Bool

  func value(in text: UnsafeBufferPointer<UInt8>) -> String {
    let raw = UnsafeBufferPointer(rebasing: text[value])
    guard escaped else { return String(decoding: raw, as: UTF8.self) }
    var out: [UInt8] = []
    out.reserveCapacity(raw.count)
    var i = 0
    while i < raw.count {
      var c = raw[i]
      if c == 0x5C && i + 1 < raw.count {
        i += 1
        switch raw[i] {
        case 0x6E: c = 0x0A
        case 0x74: c = 0x09
        case 0x72: c = 0x0D
        default: c = raw[i]
        }
      }
      out.append(c)
      i += 1
    }
    return String(decoding: out, as: UTF8.self)
  }
}
