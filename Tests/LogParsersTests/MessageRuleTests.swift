import Foundation
import LogParsers
import TraceBridgeCore
import XCTest

/// Rules over queue messages: body formats (JSON envelope, XML, text), selection with `when`,
/// charsets from every place a message can declare one, event time sources, and the reasons
/// given for messages no rule maps.
final class MessageRuleTests: XCTestCase {
  private let key = SourceKey(source: "bus", stream: 1, position: 2)
  private let nanos: Int64 = 1_000_000_000
  /// 2026-12-01T10:05:00Z (`date -u -d 2026-12-01T10:05:00Z +%s`).
  private let utc100500: Int64 = 1_796_119_500

  private struct Unexpected: Error {}

  private func evaluator(
    _ defs: [RuleDefinition], encoding: String = "utf-8", zone: String = "Europe/Moscow"
  ) throws -> RuleEvaluator {
    let rules = try defs.map { try CompiledRule($0, library: PatternLibrary()) }
    let source = SourceDefinition(
      name: "bus", service: "MES", paths: [], decoder: try CharsetDecoder(charset: encoding),
      zone: try LocalZone(identifier: zone))
    return RuleEvaluator(source: source, rules: rules, ruleIndices: Array(rules.indices))
  }

  private func rule(
    _ name: String, _ matcher: RuleDefinition.Matcher, when: MessageSelector? = nil,
    body: BodyFormat = .auto, fields: [(String, String)] = [], namespaces: [String: String] = [:],
    time: TimeSource = .field, format: String = "iso8601",
    event: EventTemplate = EventTemplate(orderID: "${order}", kind: "log"),
    link: LinkTemplate? = nil, whereClauses: [(capture: String, pattern: String)] = []
  ) -> RuleDefinition {
    var d = RuleDefinition(
      name: name, sources: ["bus"], matcher: matcher, whereClauses: whereClauses,
      timestampFormat: format, event: link == nil ? event : nil, link: link)
    var m = RuleDefinition.MessageOptions()
    m.when = when
    m.body = body
    m.fields = fields.map { (capture: $0.0, pointer: $0.1) }
    m.namespaces = namespaces
    d.message = m
    d.timeSource = time
    return d
  }

  private func event(_ e: MessageEvaluation, file: StaticString = #filePath, line: UInt = #line)
    throws -> OrderEvent
  {
    guard case .matched(_, let event) = e.outcome else {
      XCTFail("expected a match, got \(e.outcome)", file: file, line: line)
      throw Unexpected()
    }
    return event
  }

  private func deadLetter(_ e: MessageEvaluation) -> String? {
    if case .unmapped(let why) = e.outcome { return why }
    return nil
  }

  private func attribute(_ e: OrderEvent, _ key: String) -> String? {
    guard case .string(let s)? = e.attributes.first(where: { $0.key == key })?.value else {
      return nil
    }
    return s
  }

  /// "Сборка-1" in windows-1251.
  private let station1251: [UInt8] = [0xD1, 0xE1, 0xEE, 0xF0, 0xEA, 0xE0, 0x2D, 0x31]

  private func xmlBody(prolog: String?) -> [UInt8] {
    var b: [UInt8] = []
    if let prolog { b += Array("<?xml version=\"1.0\" encoding=\"\(prolog)\"?>\n".utf8) }
    b += Array(
      "<m:Job xmlns:m=\"urn:mes\" order=\"1001\"><m:Time>01.12.2026 13:05:00</m:Time><m:Station>"
        .utf8)
    b += station1251
    b += Array("</m:Station></m:Job>".utf8)
    return b
  }

  private var xmlRule: RuleDefinition {
    rule(
      "job",
      .xml([("order", "/m:Job/@order"), ("ts", "/m:Job/m:Time"), ("station", "//m:Station")]),
      namespaces: ["m": "urn:mes"], format: "dd.MM.yyyy HH:mm:ss",
      event: EventTemplate(
        orderID: "${order}", kind: "log", attributes: [("station", "${station}")]))
  }

  // MARK: Charsets

  func testXMLCharsetFromThePrologAndLocalTimeInTheSourceZone() throws {
    let ev = try evaluator([xmlRule])
    let r = ev.evaluate(
      message: MessageInput(body: xmlBody(prolog: "windows-1251")), sourceKey: key)
    let e = try event(r)
    XCTAssertEqual(attribute(e, "station"), "Сборка-1")
    XCTAssertEqual(e.timeUnixNano, utc100500 * nanos, "13:05 Moscow is 10:05 UTC")
    XCTAssertEqual(r.charset, "windows-1251")
    XCTAssertEqual(r.invalidBytes, 0)
    XCTAssertEqual(r.format, .xml)
  }

  func testCharsetFromContentEncodingWinsOverThePrologAndTheContentType() throws {
    let ev = try evaluator([xmlRule])
    let m = MessageInput(
      contentType: "application/xml; charset=utf-8", contentEncoding: "windows-1251",
      body: xmlBody(prolog: "utf-8"))
    let r = ev.evaluate(message: m, sourceKey: key)
    XCTAssertEqual(attribute(try event(r), "station"), "Сборка-1")
    XCTAssertEqual(r.charset, "windows-1251")
  }

  func testCharsetFromTheContentTypeParameter() throws {
    let ev = try evaluator([xmlRule])
    let m = MessageInput(
      contentType: "application/xml; charset=\"windows-1251\"", body: xmlBody(prolog: nil))
    let r = ev.evaluate(message: m, sourceKey: key)
    XCTAssertEqual(attribute(try event(r), "station"), "Сборка-1")
  }

  func testCharsetFromTheSourcesEncodingWhenTheMessageSaysNothing() throws {
    let ev = try evaluator([xmlRule], encoding: "windows-1251")
    let r = ev.evaluate(message: MessageInput(body: xmlBody(prolog: nil)), sourceKey: key)
    XCTAssertEqual(attribute(try event(r), "station"), "Сборка-1")
  }

  func testInvalidUTF8IsReplacedAndCountedNotFatal() throws {
    let ev = try evaluator([xmlRule])
    // Windows-1251 bytes read as UTF-8: each is an invalid sequence.
    let r = ev.evaluate(message: MessageInput(body: xmlBody(prolog: nil)), sourceKey: key)
    XCTAssertEqual(
      attribute(try event(r), "station"), "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}-1")
    XCTAssertEqual(r.invalidBytes, 6)
  }

  func testAnUnknownDeclaredCharsetFallsBackToTheSourcesAndSaysSo() throws {
    let ev = try evaluator([xmlRule], encoding: "windows-1251")
    let m = MessageInput(contentEncoding: "x-no-such-charset", body: xmlBody(prolog: nil))
    let r = ev.evaluate(message: m, sourceKey: key)
    XCTAssertEqual(attribute(try event(r), "station"), "Сборка-1")
    XCTAssertEqual(
      r.charsetProblem,
      "unknown charset 'x-no-such-charset' in content_encoding; read as windows-1251")
  }

  // MARK: Compressed bodies

  /// `<Job order="42"><T>2026-12-01T10:05:00Z</T></Job>` gzipped (Python gzip, mtime 0).
  private let gzipped: [UInt8] = [
    0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xB3, 0xF1, 0xCA, 0x4F, 0x52, 0xC8,
    0x2F, 0x4A, 0x49, 0x2D, 0xB2, 0x55, 0x32, 0x31, 0x52, 0xB2, 0xB3, 0x09, 0xB1, 0x33, 0x32, 0x30,
    0x32, 0xD3, 0x35, 0x34, 0xD2, 0x35, 0x30, 0x0C, 0x31, 0x34, 0xB0, 0x32, 0x30, 0xB5, 0x32, 0x30,
    0x88, 0xB2, 0xD1, 0x0F, 0xB1, 0xB3, 0xD1, 0x07, 0xAA, 0xB5, 0x03, 0x00, 0x79, 0xB5, 0x56, 0x4D,
    0x31, 0x00, 0x00, 0x00,
  ]

  func testGzipAndZlibBodiesAreInflatedBeforeTheRulesReadThem() throws {
    let ev = try evaluator([rule("job", .xml([("order", "/Job/@order"), ("ts", "/Job/T")]))])
    let gz = ev.evaluate(
      message: MessageInput(contentEncoding: "gzip", body: gzipped), sourceKey: key)
    XCTAssertEqual(try event(gz).key, .order("42"))
    XCTAssertEqual(try event(gz).timeUnixNano, utc100500 * nanos)
    XCTAssertEqual(gz.charset, "utf-8", "gzip is not a charset: the source's applies")
    // The same deflate data in a zlib wrapper (content_encoding: deflate).
    let zlib: [UInt8] =
      [0x78, 0x9C] + gzipped[10..<(gzipped.count - 8)] + [0x43, 0x69, 0x0C, 0x78]
    let z = ev.evaluate(
      message: MessageInput(contentEncoding: "deflate", body: zlib), sourceKey: key)
    XCTAssertEqual(try event(z).key, .order("42"))
  }

  func testCorruptTruncatedOrHugeCompressedBodiesAreDeadLetteredWithTheReason() throws {
    let ev = try evaluator([rule("job", .xml([("order", "/Job/@order"), ("ts", "/Job/T")]))])
    let plain = Array("<Job order=\"1\"/>".utf8)
    XCTAssertEqual(
      deadLetter(
        ev.evaluate(message: MessageInput(contentEncoding: "gzip", body: plain), sourceKey: key))?
        .hasPrefix("not gzip: the compressed body is corrupt"), true)
    XCTAssertEqual(
      deadLetter(
        ev.evaluate(
          message: MessageInput(contentEncoding: "gzip", body: Array(gzipped.prefix(30))),
          sourceKey: key)),
      "not gzip: the compressed body ends before its end marker")
    // 20 MiB of zeros compress to about 20 KiB: over the 16 MiB bound when inflated.
    let bomb = Array(repeating: UInt8(0), count: 20 << 20)
    guard case .failure(.tooLarge(let limit)) = Inflate.inflate(Self.gzip(bomb), limit: 16 << 20)
    else { return XCTFail("a body inflating past the limit must be refused") }
    XCTAssertEqual(limit, 16 << 20)
    XCTAssertEqual(try Inflate.inflate(Self.gzip(plain), limit: 1 << 20).get(), plain)
  }

  /// gzip through the system's `gzip` (the tests do not link zlib themselves).
  static func gzip(_ data: [UInt8]) -> [UInt8] {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "mrt-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let file = dir.appendingPathComponent("b")
    _ = FileManager.default.createFile(atPath: file.path, contents: Data(data))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/gzip")
    p.arguments = ["-n", file.path]
    try? p.run()
    p.waitUntilExit()
    return [UInt8](FileManager.default.contents(atPath: file.path + ".gz") ?? Data())
  }

  // MARK: Formats

  func testJSONRulesReadTheEnvelopeOfPropertiesHeadersAndBody() throws {
    let ev = try evaluator([
      rule(
        "json",
        .json([
          ("order", "/body/message/orderId"), ("ts", "/body/sentTime"), ("kind", "/headers/x-kind"),
        ]))
    ])
    let m = MessageInput(
      routingKey: "crm.order", headers: [("x-kind", "confirm")],
      body: Array(#"{"message":{"orderId":"77"},"sentTime":"2026-12-01T10:05:00Z"}"#.utf8))
    let e = try event(ev.evaluate(message: m, sourceKey: key))
    XCTAssertEqual(e.key, .order("77"))
    XCTAssertEqual(e.timeUnixNano, utc100500 * nanos)
  }

  func testTheEnvelopeHoldsEveryPropertyAndHeaderSomeRulePointsAt() throws {
    // Two rules name different properties and headers: each finds its own, whichever rule
    // the envelope was built for first; an absent header is absent, not empty.
    let ev = try evaluator([
      rule(
        "by-type",
        .json([("order", "/body/id"), ("ts", "/body/at"), ("t", "/properties/type")]),
        event: EventTemplate(orderID: "${order}", kind: "log", attributes: [("t", "${t}")])),
      rule(
        "by-header",
        .json([
          ("order", "/body/id"), ("ts", "/body/at"), ("h", "/headers/x-odd \"name\""),
          ("mid", "/properties/message_id"),
        ]),
        event: EventTemplate(
          orderID: "${order}", kind: "log", attributes: [("h", "${h}"), ("mid", "${mid}")])),
    ])
    let body = Array(#"{"id":"9","at":"2026-12-01T10:05:00Z"}"#.utf8)
    let typed = try event(
      ev.evaluate(
        message: MessageInput(messageID: "m-9", type: "OrderPaid", body: body), sourceKey: key))
    XCTAssertEqual(typed.rule, "by-type")
    XCTAssertEqual(attribute(typed, "t"), "OrderPaid")
    let headed = try event(
      ev.evaluate(
        message: MessageInput(
          messageID: "m-10", headers: [("x-other", "1"), ("x-odd \"name\"", "v\"1")], body: body),
        sourceKey: key))
    XCTAssertEqual(headed.rule, "by-header")
    XCTAssertEqual(attribute(headed, "h"), "v\"1")
    XCTAssertEqual(attribute(headed, "mid"), "m-10")
    XCTAssertNotNil(
      deadLetter(
        ev.evaluate(
          message: MessageInput(headers: [("x-other", "1")], body: body), sourceKey: key)))
  }

  func testAnArrayOfTypeNamesSelectsWithWhere() throws {
    let ev = try evaluator([
      rule(
        "confirmed",
        .json([
          ("order", "/body/message/orderId"), ("types", "/body/messageType"),
          ("ts", "/body/sentTime"),
        ]),
        whereClauses: [("types", #""urn:message:Crm:OrderConfirmed""#)])
    ])
    func body(_ type: String) -> [UInt8] {
      Array(
        #"{"messageType":["urn:message:Crm:Base","\#(type)"],"message":{"orderId":"5"},"sentTime":"2026-12-01T10:05:00Z"}"#
          .utf8)
    }
    XCTAssertNoThrow(
      try event(
        ev.evaluate(
          message: MessageInput(body: body("urn:message:Crm:OrderConfirmed")), sourceKey: key)))
    XCTAssertNotNil(
      deadLetter(
        ev.evaluate(
          message: MessageInput(body: body("urn:message:Crm:OrderCancelled")), sourceKey: key)))
  }

  func testTextBodiesUseThePatternAndPropertiesComeFromMessageFields() throws {
    let ev = try evaluator([
      rule(
        "handover", .pattern(#"^HANDOVER order=(?<order>\d+) at (?<ts>\S+)"#),
        fields: [("mid", "/properties/message_id"), ("kind", "/headers/x-kind")],
        event: EventTemplate(
          orderID: "${order}", kind: "log", attributes: [("mid", "${mid}"), ("kind", "${kind}")]))
    ])
    let m = MessageInput(
      messageID: "m-1", contentType: "text/plain", headers: [("x-kind", "courier")],
      body: Array("HANDOVER order=12 at 2026-12-01T10:05:00Z".utf8))
    let e = try event(ev.evaluate(message: m, sourceKey: key))
    XCTAssertEqual(e.key, .order("12"))
    XCTAssertEqual(attribute(e, "mid"), "m-1")
    XCTAssertEqual(attribute(e, "kind"), "courier")
  }

  func testAutoFormatFollowsTheContentTypeThenTheFirstByte() {
    XCTAssertEqual(
      MessageInput(contentType: "application/vnd.masstransit+json", body: []).detectedFormat, .json)
    XCTAssertEqual(
      MessageInput(contentType: "text/xml; charset=utf-8", body: []).detectedFormat, .xml)
    XCTAssertEqual(
      MessageInput(contentType: "text/plain", body: Array("{".utf8)).detectedFormat, .text)
    XCTAssertEqual(MessageInput(contentType: "application/json", body: []).detectedFormat, .json)
    XCTAssertEqual(MessageInput(contentType: "Application/XML", body: []).detectedFormat, .xml)
    XCTAssertEqual(MessageInput(contentType: " text/plain ", body: []).detectedFormat, .text)
    XCTAssertEqual(
      MessageInput(contentType: "", body: Array("<a/>".utf8)).detectedFormat, .xml,
      "an empty content type says nothing")
    XCTAssertEqual(MessageInput(body: Array("  <a/>".utf8)).detectedFormat, .xml)
    XCTAssertEqual(MessageInput(body: Array("\n[1]".utf8)).detectedFormat, .json)
    XCTAssertEqual(MessageInput(body: Array("JOB 1".utf8)).detectedFormat, .text)
  }

  func testAnExplicitBodyFormatOverridesAMisleadingContentType() throws {
    let auto = try evaluator([xmlRule], encoding: "windows-1251")
    let m = MessageInput(contentType: "text/plain", body: xmlBody(prolog: nil))
    XCTAssertNotNil(
      deadLetter(auto.evaluate(message: m, sourceKey: key)), "auto: text/plain is not XML")
    var forced = xmlRule
    forced.message?.body = .xml
    let ev = try evaluator([forced], encoding: "windows-1251")
    XCTAssertNoThrow(try event(ev.evaluate(message: m, sourceKey: key)))
  }

  // MARK: Selection

  func testWhenSelectsByRoutingKeyTopicTypeHeaderAndContentType() throws {
    let selector = MessageSelector(
      routingKey: "mes.*.started", type: "JobStarted", contentType: "application/xml",
      headers: [("x-plant", "P1")])
    let ev = try evaluator([
      rule(
        "sel", .xml([("order", "/m:Job/@order"), ("ts", "/m:Job/m:Time")]), when: selector,
        namespaces: ["m": "urn:mes"], format: "dd.MM.yyyy HH:mm:ss")
    ])
    var m = MessageInput(
      routingKey: "mes.job.started", type: "JobStarted",
      contentType: "Application/XML; charset=windows-1251",
      headers: [("x-plant", "P1")], body: xmlBody(prolog: nil))
    XCTAssertNoThrow(try event(ev.evaluate(message: m, sourceKey: key)))
    m.headers = [("x-plant", "P2")]
    XCTAssertEqual(
      deadLetter(ev.evaluate(message: m, sourceKey: key))?.hasPrefix(
        "no rule matched the message: none selects it"), true)
    m.headers = [("x-plant", "P1")]
    m.routingKey = "mes.job.step.started"
    XCTAssertNotNil(deadLetter(ev.evaluate(message: m, sourceKey: key)))
  }

  func testTopicPatterns() {
    XCTAssertTrue(MessageSelector.topicMatches(pattern: "order.#", key: "order"))
    XCTAssertTrue(MessageSelector.topicMatches(pattern: "order.#", key: "order.paid.eu"))
    XCTAssertTrue(MessageSelector.topicMatches(pattern: "#.paid", key: "order.paid"))
    XCTAssertTrue(MessageSelector.topicMatches(pattern: "*.paid", key: "order.paid"))
    XCTAssertFalse(MessageSelector.topicMatches(pattern: "*.paid", key: "paid"))
    XCTAssertFalse(MessageSelector.topicMatches(pattern: "order.*", key: "order.paid.eu"))
    XCTAssertTrue(MessageSelector.topicMatches(pattern: "#", key: ""))
  }

  // MARK: Time

  func testTimeFromTheAMQPTimestampOrTheReceipt() throws {
    let body = Array("<Job order=\"3\"/>".utf8)
    let amqp = try evaluator([rule("t", .xml([("order", "/Job/@order")]), time: .amqp)])
    let m = MessageInput(timestamp: UInt64(utc100500), body: body, receivedUnixNano: 5 * nanos)
    let e = try event(amqp.evaluate(message: m, sourceKey: key))
    XCTAssertEqual(e.timeUnixNano, utc100500 * nanos)
    XCTAssertEqual(e.zoneRule, "amqp_timestamp")
    guard
      case .rejected(_, .missingTimestamp) = amqp.evaluate(
        message: MessageInput(body: body), sourceKey: key
      ).outcome
    else { return XCTFail("a message without the timestamp property cannot be timed by it") }
    let received = try evaluator([rule("t", .xml([("order", "/Job/@order")]), time: .received)])
    XCTAssertEqual(try event(received.evaluate(message: m, sourceKey: key)).timeUnixNano, 5 * nanos)
  }

  // MARK: Aliases

  func testAnXMLMessageNamingOnlyAJobIdMakesAnAliasEventAndALinkMessageBindsIt() throws {
    let ev = try evaluator([
      rule(
        "link", .xml([("job", "/JobAssigned/Job"), ("order", "/JobAssigned/Order")]),
        time: .received,
        link: LinkTemplate(kind: "mes_job", key: "${job}", orderID: "${order}")),
      rule(
        "started", .xml([("job", "/JobStarted/@job")]), time: .received,
        event: EventTemplate(
          aliasKind: "mes_job", aliasKey: "${job}", kind: "step_start", step: "production")),
    ])
    let started = try event(
      ev.evaluate(
        message: MessageInput(body: Array("<JobStarted job=\"J-7\"/>".utf8)), sourceKey: key))
    XCTAssertEqual(started.key, .alias(AliasKey(kind: "mes_job", key: "J-7")))
    let link = try event(
      ev.evaluate(
        message: MessageInput(
          body: Array("<JobAssigned><Job>J-7</Job><Order>900</Order></JobAssigned>".utf8)),
        sourceKey: key))
    XCTAssertEqual(
      link.link, AliasLink(alias: AliasKey(kind: "mes_job", key: "J-7"), orderID: "900"))
  }

  // MARK: Dead letters

  func testReasonsForMessagesNoRuleMaps() throws {
    let ev = try evaluator([xmlRule])
    XCTAssertEqual(
      deadLetter(
        ev.evaluate(message: MessageInput(body: Array("<a><b></a>".utf8)), sourceKey: key))?
        .hasPrefix("not well-formed XML: line 1:"), true)
    XCTAssertEqual(
      deadLetter(ev.evaluate(message: MessageInput(body: Array("<Other/>".utf8)), sourceKey: key))?
        .hasPrefix("no rule matched the message (tried job;"), true)
    XCTAssertEqual(
      deadLetter(ev.evaluate(message: MessageInput(body: [0x00, 0xFF, 0x13]), sourceKey: key))?
        .hasPrefix("not XML: the body is text (content type (none)"), true,
      "every rule that could take it reads XML")
    let selective = try evaluator([
      rule(
        "sel", .xml([("order", "/Job/@order")]), when: MessageSelector(type: "Job"), time: .received
      )
    ])
    XCTAssertEqual(
      deadLetter(
        selective.evaluate(
          message: MessageInput(type: "Other", body: Array("<Job order=\"1\"/>".utf8)),
          sourceKey: key))?
        .hasPrefix(
          "no rule matched the message: none selects it by when and body format (xml body"), true)
    let json = try evaluator([rule("j", .json([("order", "/body/o"), ("ts", "/body/t")]))])
    XCTAssertEqual(
      deadLetter(
        json.evaluate(message: MessageInput(body: Array("{\"o\": ".utf8)), sourceKey: key)),
      "not JSON: the body does not parse as a JSON document")
  }

  // MARK: Compile errors

  func testCompileErrorsNameTheField() {
    func error(_ d: RuleDefinition) -> RuleCompileError? {
      do {
        _ = try CompiledRule(d, library: PatternLibrary())
        return nil
      } catch { return error }
    }
    let badPrefix = error(rule("x", .xml([("order", "/q:Job/@id"), ("ts", "/Job/T")])))
    XCTAssertEqual(badPrefix?.field, "xml.order")
    XCTAssertTrue(
      badPrefix?.message.contains("namespaces") ?? false, "\(String(describing: badPrefix))")
    let badField = error(
      rule(
        "x", .xml([("order", "/Job/@id"), ("ts", "/Job/T")]), fields: [("m", "/properties/nope")]))
    XCTAssertEqual(badField?.field, "message.m")
    XCTAssertTrue(badField?.message.contains("message_id") ?? false)
    let badBody = error(rule("x", .xml([("order", "/Job/@id"), ("ts", "/Job/T")]), body: .json))
    XCTAssertEqual(badBody?.field, "body")
    let noTime = error(rule("x", .xml([("order", "/Job/@id")])))
    XCTAssertEqual(noTime?.field, "timestamp.field")
    XCTAssertNil(error(rule("x", .xml([("order", "/Job/@id")]), time: .amqp)))
  }
}
