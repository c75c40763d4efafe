import LogParsers
import TraceBridgeCore
import XCTest

/// Rules compiled with `CompiledRule` and evaluated with `RuleEvaluator`, feature by feature
/// (docs/configuration.md, `rules`).
final class RuleEvaluatorTests: XCTestCase {
  private let sourceKey = SourceKey(source: "mes", stream: 0xABC, position: 42)

  // Instants the tests expect, computed with `date -u -d … +%s`.
  /// 2026-03-29T00:59:58Z
  private let utc005958: Int64 = 1_774_745_998
  /// 2026-03-28T10:37:27Z
  private let utc103727: Int64 = 1_774_694_247
  private let nanos: Int64 = 1_000_000_000

  // MARK: Helpers

  private struct UnexpectedOutcome: Error {}

  private func source(zone: String = "UTC") throws -> SourceDefinition {
    SourceDefinition(
      name: "mes", service: "MES", paths: [], decoder: try CharsetDecoder(charset: "utf-8"),
      zone: try LocalZone(identifier: zone))
  }

  private func evaluator(
    _ defs: [RuleDefinition], zone: String = "UTC", library: PatternLibrary = PatternLibrary(),
    indices: [Int]? = nil
  ) throws -> RuleEvaluator {
    let rules = try defs.map { try CompiledRule($0, library: library) }
    return RuleEvaluator(
      source: try source(zone: zone), rules: rules, ruleIndices: indices ?? Array(rules.indices))
  }

  private func evaluate(_ evaluator: RuleEvaluator, _ line: String) -> RuleOutcome {
    var text = line
    return text.withUTF8 { evaluator.evaluate($0, sourceKey: sourceKey) }
  }

  private func outcome(
    _ line: String, _ defs: [RuleDefinition], zone: String = "UTC",
    library: PatternLibrary = PatternLibrary()
  ) throws -> RuleOutcome {
    evaluate(try evaluator(defs, zone: zone, library: library), line)
  }

  /// The event of a matched outcome; fails the test otherwise.
  private func event(
    _ outcome: RuleOutcome, file: StaticString = #filePath, line: UInt = #line
  ) throws -> OrderEvent {
    guard case .matched(_, let event) = outcome else {
      XCTFail("expected a match, got \(outcome)", file: file, line: line)
      throw UnexpectedOutcome()
    }
    return event
  }

  private func matchedRule(_ outcome: RuleOutcome) -> Int? {
    if case .matched(let rule, _) = outcome { return rule }
    return nil
  }

  private func rejection(_ outcome: RuleOutcome) -> (rule: Int, reason: RejectReason)? {
    if case .rejected(let rule, let reason) = outcome { return (rule, reason) }
    return nil
  }

  private func isUnmatched(_ outcome: RuleOutcome) -> Bool {
    if case .unmatched = outcome { return true }
    return false
  }

  private func attributes(_ event: OrderEvent) -> [String: String] {
    var out: [String: String] = [:]
    for a in event.attributes {
      if case .string(let s) = a.value { out[a.key] = s }
    }
    return out
  }

  private func compileError(
    _ def: RuleDefinition, library: PatternLibrary = PatternLibrary()
  ) -> RuleCompileError? {
    do {
      _ = try CompiledRule(def, library: library)
      return nil
    } catch {
      return error
    }
  }

  /// `<ts> order <order> status <status>`, a status change keyed by the order.
  private func statusRule(
    _ name: String = "status", status: String = "${status}", kind: String = "status_change"
  ) -> RuleDefinition {
    RuleDefinition(
      name: name, sources: ["mes"],
      matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+) status (?<status>\w+)$"#),
      event: EventTemplate(orderID: "${order}", kind: kind, status: status))
  }

  // MARK: Pattern rules

  func testPatternRuleReadsNamedGroupsIntoTheEvent() throws {
    let e = try event(
      outcome("2026-03-29T01:59:58.123+01:00 order 1234567 status PAID", [statusRule("mes-status")])
    )
    XCTAssertEqual(e.key, .order("1234567"))
    XCTAssertEqual(e.kind, .statusChange)
    XCTAssertEqual(e.status, "PAID")
    XCTAssertEqual(e.service, "MES")
    XCTAssertEqual(e.name, "mes-status", "the name defaults to the rule's name")
    XCTAssertEqual(e.rule, "mes-status")
    XCTAssertEqual(e.sourceKey, sourceKey)
    XCTAssertEqual(e.timeUnixNano, utc005958 * nanos + 123_000_000)
    XCTAssertNil(e.link)
    XCTAssertNil(e.userID)
  }

  func testPatternRuleUsesBuiltinAndCustomSubPatternCaptures() throws {
    let library = PatternLibrary(custom: [
      "ORDER_ID": #"\d{6,7}"#, "HEAD": "%{TIMESTAMP_ISO8601:ts} +%{LOGLEVEL:level} +",
    ])
    let def = RuleDefinition(
      name: "created", sources: ["shop"],
      matcher: .pattern("^%{HEAD}Order %{ORDER_ID:order} created"),
      event: EventTemplate(
        orderID: "${order}", kind: "status_change", status: "CREATED",
        attributes: [(key: "log.level", value: "${level}")]))
    let rule = try CompiledRule(def, library: library)
    XCTAssertEqual(rule.captureNames, ["ts", "level", "order"])
    let e = try event(
      outcome(
        "2026-03-29T01:59:58.123+01:00 INFO  Order 1234567 created by u1", [def], library: library))
    XCTAssertEqual(e.key, .order("1234567"))
    XCTAssertEqual(e.status, "CREATED")
    XCTAssertEqual(attributes(e), ["log.level": "INFO"])
    XCTAssertTrue(
      isUnmatched(
        try outcome("2026-03-29T01:59:58Z INFO  Order 12345 created", [def], library: library)))
  }

  func testUnknownSubPatternFailsToCompileOnThePatternField() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern("^%{TS:ts} %{ORDERID:order}"),
      event: EventTemplate(orderID: "${order}"))
    let error = compileError(def, library: PatternLibrary(custom: ["TS": #"\S+"#]))
    XCTAssertEqual(error?.rule, "r")
    XCTAssertEqual(error?.field, "pattern")
    XCTAssertTrue(
      error?.message.contains("unknown sub-pattern %{ORDERID}") == true,
      "\(String(describing: error))")
  }

  func testRecursiveSubPatternFailsToCompileOnThePatternField() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern("^%{A:ts}"), event: EventTemplate(orderID: "x")
    )
    let error = compileError(def, library: PatternLibrary(custom: ["A": "%{B}", "B": "%{A}"]))
    XCTAssertEqual(error?.field, "pattern")
    XCTAssertTrue(error?.message.contains("loop") == true, "\(String(describing: error))")
  }

  func testMalformedSubPatternReferenceFailsToCompileOnThePatternField() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern("^%{INT:ts"),
      event: EventTemplate(orderID: "x"))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "pattern")
    XCTAssertTrue(
      error?.message.contains("%{NAME:capture}") == true, "\(String(describing: error))")
  }

  func testInvalidPCRE2PatternFailsToCompileOnThePatternField() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern("^(?<ts>\\S+ (?<order>\\d+)"),
      event: EventTemplate(orderID: "${order}"))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "pattern")
    XCTAssertTrue(
      error?.message.contains("invalid pattern at offset") == true, "\(String(describing: error))")
  }

  // MARK: Templates

  func testLiteralTemplateIsUsedAsIs() throws {
    var def = statusRule(status: "PAID")
    def.event?.attributes = [(key: "db.system", value: "sqlite")]
    let e = try event(outcome("2026-03-29T00:59:58Z order 5 status WHATEVER", [def]))
    XCTAssertEqual(e.status, "PAID")
    XCTAssertEqual(attributes(e), ["db.system": "sqlite"])
  }

  func testMixedTemplateJoinsLiteralTextAndCaptures() throws {
    let def = RuleDefinition(
      name: "job", sources: ["mes"],
      matcher: .pattern(#"^(?<ts>\S+) job (?<job>\d+) of (?<order>\d+)$"#),
      event: EventTemplate(
        orderID: "ORD-${order}", name: "job J-${job} (${order})",
        attributes: [(key: "mes.job_id", value: "J-${job}")]))
    let e = try event(outcome("2026-03-29T00:59:58Z job 77 of 1234567", [def]))
    XCTAssertEqual(e.key, .order("ORD-1234567"))
    XCTAssertEqual(e.name, "job J-77 (1234567)")
    XCTAssertEqual(attributes(e), ["mes.job_id": "J-77"])
  }

  func testAbsentCaptureLeavesFieldsAndAttributesOut() throws {
    let def = RuleDefinition(
      name: "cancel", sources: ["mes"],
      matcher: .pattern(
        #"^(?<ts>\S+) order (?<order>\d+) cancelled(?: by (?<user>u\d+))?(?: reason=(?<reason>\w+))?$"#
      ),
      event: EventTemplate(
        orderID: "${order}", kind: "status_change", status: "CANCELLED", userID: "${user}",
        attributes: [
          (key: "reason", value: "${reason}"), (key: "reason.text", value: "reason: ${reason}"),
          (key: "order", value: "${order}"),
        ]))
    let bare = try event(outcome("2026-03-29T00:59:58Z order 5 cancelled", [def]))
    XCTAssertNil(bare.userID)
    XCTAssertEqual(attributes(bare), ["order": "5"], "an absent capture drops the whole attribute")

    let full = try event(
      outcome("2026-03-29T00:59:58Z order 5 cancelled by u7 reason=timeout", [def]))
    XCTAssertEqual(full.userID, "u7")
    XCTAssertEqual(
      attributes(full), ["reason": "timeout", "reason.text": "reason: timeout", "order": "5"])
  }

  func testEmptyCaptureLeavesTheFieldOut() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"],
      matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+) user=(?<user>\w*)$"#),
      event: EventTemplate(
        orderID: "${order}", userID: "${user}", attributes: [(key: "u", value: "${user}")]))
    let e = try event(outcome("2026-03-29T00:59:58Z order 5 user=", [def]))
    XCTAssertNil(e.userID)
    XCTAssertTrue(e.attributes.isEmpty)
  }

  func testMissingOrderIDCaptureRejectsWithMissingOrderID() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"],
      matcher: .pattern(#"^(?<ts>\S+) payment(?: for order (?<order>\d+))?$"#),
      event: EventTemplate(orderID: "${order}"))
    let o = try outcome("2026-03-29T00:59:58Z payment", [def])
    XCTAssertEqual(rejection(o)?.rule, 0)
    XCTAssertEqual(rejection(o)?.reason, .missingOrderID)
    XCTAssertEqual(RejectReason.missingOrderID.rawValue, "missing_order_id")
  }

  func testMixedOrderIDTemplateWithMissingCaptureIsRejectedNotRenderedHalf() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(#"^(?<ts>\S+) job(?: (?<job>\d+))?$"#),
      event: EventTemplate(orderID: "J-${job}"))
    XCTAssertEqual(
      rejection(try outcome("2026-03-29T00:59:58Z job", [def]))?.reason, .missingOrderID)
  }

  func testMissingStatusCaptureRejectsWithMissingStatus() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"],
      matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+)(?: status (?<status>\w+))?$"#),
      event: EventTemplate(orderID: "${order}", kind: "status_change", status: "${status}"))
    XCTAssertEqual(
      rejection(try outcome("2026-03-29T00:59:58Z order 5", [def]))?.reason, .missingStatus)
  }

  func testUnknownCaptureInTemplateFailsToCompileNamingFieldAndCaptures() {
    let error = compileError(statusRule(status: "${stat}"))
    XCTAssertEqual(error?.field, "event.status")
    XCTAssertEqual(error?.message, "unknown capture '${stat}'; the rule defines: ts, order, status")
    XCTAssertEqual(
      error?.description,
      "rule 'status': event.status: unknown capture '${stat}'; the rule defines: ts, order, status")
  }

  func testUnknownCaptureInAttributeFailsToCompileNamingTheAttribute() {
    var def = statusRule()
    def.event?.attributes = [(key: "order.total", value: "${total}")]
    let error = compileError(def)
    XCTAssertEqual(error?.field, "event.attributes.order.total")
    XCTAssertTrue(error?.message.contains("'${total}'") == true)
  }

  func testUnclosedTemplateFailsToCompile() {
    var def = statusRule()
    def.event?.orderID = "${order"
    let error = compileError(def)
    XCTAssertEqual(error?.field, "event.order_id")
    XCTAssertTrue(error?.message.contains("unclosed '${'") == true, "\(String(describing: error))")
  }

  // MARK: JSON rules

  private func jsonRule(
    _ fields: [(capture: String, pointer: String)], attributes: [String] = [],
    whereClauses: [(capture: String, pattern: String)] = [], format: String = "iso8601"
  ) -> RuleDefinition {
    RuleDefinition(
      name: "json", sources: ["crm"], matcher: .json(fields), whereClauses: whereClauses,
      timestampFormat: format,
      event: EventTemplate(
        orderID: "${order}", attributes: attributes.map { (key: $0, value: "${\($0)}") }))
  }

  func testJSONRuleReadsFieldsByPointer() throws {
    let def = jsonRule(
      [
        (capture: "ts", pointer: "/@t"), (capture: "order", pointer: "/context/orderId"),
        (capture: "sku", pointer: "/items/1/sku"), (capture: "deep", pointer: "/a/b/0/c"),
      ], attributes: ["sku", "deep"])
    let line =
      #"{"@t":"2026-03-29T00:59:58Z","context":{"orderId":"7115764"},"items":[{"sku":"A"},{"sku":"B"}],"a":{"b":[{"c":"d"}]}}"#
    let e = try event(outcome(line, [def]))
    XCTAssertEqual(e.key, .order("7115764"))
    XCTAssertEqual(e.timeUnixNano, utc005958 * nanos)
    XCTAssertEqual(attributes(e), ["sku": "B", "deep": "d"])
  }

  func testJSONPointerUnescapesTildeOneAndTildeZero() throws {
    let def = jsonRule(
      [
        (capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/a~1b"),
        (capture: "t", pointer: "/m~0n~01"),
      ],
      attributes: ["t"])
    let e = try event(outcome(#"{"ts":"2026-03-29T00:59:58Z","a/b":"42","m~n~1":"tilde"}"#, [def]))
    XCTAssertEqual(e.key, .order("42"))
    XCTAssertEqual(attributes(e), ["t": "tilde"])
  }

  func testJSONNumbersAndBooleansAreRenderedAsStrings() throws {
    let def = jsonRule(
      [
        (capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/order"),
        (capture: "amount", pointer: "/amount"), (capture: "paid", pointer: "/paid"),
        (capture: "refunded", pointer: "/refunded"), (capture: "count", pointer: "/count"),
      ], attributes: ["amount", "paid", "refunded", "count"])
    let line =
      #"{"ts":"2026-03-29T00:59:58Z","order":1234567,"amount":2168.89,"paid":true,"refunded":false,"count":0}"#
    let e = try event(outcome(line, [def]))
    XCTAssertEqual(e.key, .order("1234567"))
    XCTAssertEqual(
      attributes(e), ["amount": "2168.89", "paid": "true", "refunded": "false", "count": "0"])
  }

  func testJSONNestedObjectsAndArraysAreRenderedAsCompactJSON() throws {
    let def = jsonRule(
      [
        (capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/o"),
        (capture: "tags", pointer: "/tags"),
      ],
      attributes: ["tags"])
    let e = try event(outcome(#"{"ts":"2026-03-29T00:59:58Z","o":"1","tags":["a","b"]}"#, [def]))
    XCTAssertEqual(attributes(e), ["tags": #"["a","b"]"#])
  }

  func testJSONEpochMillisNumberIsATimestamp() throws {
    let def = jsonRule(
      [(capture: "ts", pointer: "/t"), (capture: "order", pointer: "/o")], format: "epoch_millis")
    let e = try event(outcome(#"{"t":1774749598123,"o":"5"}"#, [def], zone: "Europe/Moscow"))
    XCTAssertEqual(e.timeUnixNano, 1_774_749_598_123_000_000)
  }

  func testJSONRuleWithAbsentOrNullFieldDoesNotMatch() throws {
    let def = jsonRule([(capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/ctx/order")])
    XCTAssertTrue(isUnmatched(try outcome(#"{"ts":"2026-03-29T00:59:58Z","ctx":{}}"#, [def])))
    XCTAssertTrue(
      isUnmatched(try outcome(#"{"ts":"2026-03-29T00:59:58Z","ctx":{"order":null}}"#, [def])))
    XCTAssertTrue(isUnmatched(try outcome(#"{"ts":"2026-03-29T00:59:58Z","ctx":"flat"}"#, [def])))
  }

  func testJSONArrayIndexOutOfRangeDoesNotMatch() throws {
    let def = jsonRule([(capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/o/2")])
    XCTAssertTrue(isUnmatched(try outcome(#"{"ts":"2026-03-29T00:59:58Z","o":["1","2"]}"#, [def])))
  }

  func testNonJSONLineDoesNotMatchAndTheNextRuleIsTried() throws {
    let json = jsonRule([(capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/order")])
    let plain = statusRule()
    let ev = try evaluator([json, plain])
    let o = evaluate(ev, "2026-03-29T00:59:58Z order 5 status PAID")
    XCTAssertEqual(matchedRule(o), 1)
    XCTAssertEqual(try event(o).status, "PAID")
    XCTAssertTrue(isUnmatched(evaluate(ev, #"{"ts":"2026-03-29T00:59:58Z","order": broken"#)))
    XCTAssertTrue(isUnmatched(evaluate(ev, #"["2026-03-29T00:59:58Z","5"]"#)))
    XCTAssertEqual(
      matchedRule(evaluate(ev, #"  {"ts":"2026-03-29T00:59:58Z","order":"5"}"#)), 0,
      "leading blanks before the object are allowed")
  }

  func testLaterJSONRuleSeesTheSameRecordAfterAnEarlierOneFailed() throws {
    var first = jsonRule([(capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/missing")])
    first.name = "first"
    var second = jsonRule([(capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/order")])
    second.name = "second"
    let o = try outcome(#"{"ts":"2026-03-29T00:59:58Z","order":"9"}"#, [first, second])
    XCTAssertEqual(matchedRule(o), 1)
    XCTAssertEqual(try event(o).rule, "second")
  }

  func testJSONPointerWithoutLeadingSlashFailsToCompile() {
    let error = compileError(
      jsonRule([(capture: "ts", pointer: "/ts"), (capture: "order", pointer: "context.orderId")]))
    XCTAssertEqual(error?.field, "json.order")
    XCTAssertTrue(error?.message.contains("/context/orderId") == true)
  }

  func testJSONRuleWithoutFieldsFailsToCompile() {
    XCTAssertEqual(compileError(jsonRule([]))?.field, "json")
  }

  // MARK: logfmt rules

  private func logfmtRule(
    _ fields: [(capture: String, key: String)], attributes: [String] = [],
    whereClauses: [(capture: String, pattern: String)] = []
  ) -> RuleDefinition {
    RuleDefinition(
      name: "logfmt", sources: ["crm"], matcher: .logfmt(fields), whereClauses: whereClauses,
      event: EventTemplate(
        orderID: "${order}", attributes: attributes.map { (key: $0, value: "${\($0)}") }))
  }

  func testLogfmtRuleReadsBareAndQuotedValues() throws {
    let def = logfmtRule(
      [
        (capture: "ts", key: "ts"), (capture: "order", key: "order_id"),
        (capture: "msg", key: "msg"), (capture: "amount", key: "amount"),
      ],
      attributes: ["msg", "amount"])
    let e = try event(
      outcome(
        #"ts=2026-03-29T00:59:58Z level=info msg="invoice issued" order_id=9877560\#tamount=2168.89"#,
        [def]))
    XCTAssertEqual(e.key, .order("9877560"))
    XCTAssertEqual(e.timeUnixNano, utc005958 * nanos)
    XCTAssertEqual(attributes(e), ["msg": "invoice issued", "amount": "2168.89"])
  }

  func testLogfmtQuotedValuesUnescapeQuotesBackslashesAndNewlines() throws {
    let def = logfmtRule(
      [
        (capture: "ts", key: "ts"), (capture: "order", key: "o"), (capture: "msg", key: "msg"),
        (capture: "path", key: "path"),
      ],
      attributes: ["msg", "path"])
    let e = try event(
      outcome(#"ts=2026-03-29T00:59:58Z msg="say \"hi\"\nthen\tgo" path="C:\\tmp x" o=1"#, [def]))
    XCTAssertEqual(attributes(e), ["msg": "say \"hi\"\nthen\tgo", "path": #"C:\tmp x"#])
  }

  func testLogfmtValueMayContainEqualsSigns() throws {
    let def = logfmtRule(
      [(capture: "ts", key: "ts"), (capture: "order", key: "o"), (capture: "url", key: "url")],
      attributes: ["url"])
    let e = try event(outcome("ts=2026-03-29T00:59:58Z url=http://x/?a=b&c=d o=1", [def]))
    XCTAssertEqual(attributes(e), ["url": "http://x/?a=b&c=d"])
  }

  func testLogfmtBareKeyIsPresentWithAnEmptyValue() throws {
    let def = logfmtRule(
      [(capture: "ts", key: "ts"), (capture: "order", key: "o"), (capture: "retry", key: "retry")],
      attributes: ["retry"])
    let e = try event(outcome("ts=2026-03-29T00:59:58Z retry o=1", [def]))
    XCTAssertEqual(e.key, .order("1"))
    XCTAssertEqual(attributes(e), [:], "the key is present, its empty value renders as absent")
    XCTAssertTrue(isUnmatched(try outcome("ts=2026-03-29T00:59:58Z o=1", [def])))
  }

  func testLogfmtRuleWithMissingKeyDoesNotMatch() throws {
    let def = logfmtRule([(capture: "ts", key: "ts"), (capture: "order", key: "order_id")])
    XCTAssertTrue(isUnmatched(try outcome("ts=2026-03-29T00:59:58Z order=1", [def])))
    XCTAssertTrue(isUnmatched(try outcome("just some text", [def])))
  }

  // MARK: where clauses

  func testWhereClauseMustMatchForTheRuleToMatch() throws {
    let def = logfmtRule(
      [
        (capture: "ts", key: "ts"), (capture: "order", key: "order_id"),
        (capture: "msg", key: "msg"),
      ],
      whereClauses: [(capture: "msg", pattern: "^invoice issued$")])
    let ev = try evaluator([def])
    XCTAssertNotNil(
      matchedRule(evaluate(ev, #"ts=2026-03-29T00:59:58Z msg="invoice issued" order_id=1"#)))
    XCTAssertTrue(
      isUnmatched(
        evaluate(ev, #"ts=2026-03-29T00:59:58Z msg="invoice preview rendered" order_id=1"#)))
  }

  func testFailedWhereClauseLetsTheNextRuleTry() throws {
    let payment = jsonRule(
      [
        (capture: "ts", pointer: "/@t"), (capture: "order", pointer: "/OrderId"),
        (capture: "status", pointer: "/Status"),
      ],
      whereClauses: [
        (capture: "status", pattern: "^(?:PAYMENT_PENDING|PAID)$"),
        (capture: "order", pattern: #"^\d{6,7}$"#),
      ])
    var fallback = jsonRule([
      (capture: "ts", pointer: "/@t"), (capture: "order", pointer: "/OrderId"),
    ])
    fallback.name = "fallback"
    let ev = try evaluator([payment, fallback])
    XCTAssertEqual(
      matchedRule(
        evaluate(ev, #"{"@t":"2026-03-29T00:59:58Z","OrderId":"7115764","Status":"PAID"}"#)), 0)
    XCTAssertEqual(
      matchedRule(
        evaluate(ev, #"{"@t":"2026-03-29T00:59:58Z","OrderId":"7115764","Status":"Healthy"}"#)), 1)
    XCTAssertEqual(
      matchedRule(evaluate(ev, #"{"@t":"2026-03-29T00:59:58Z","OrderId":"12","Status":"PAID"}"#)), 1
    )
  }

  func testWhereClauseNamedGroupsBecomeCaptures() throws {
    let def = logfmtRule(
      [
        (capture: "ts", key: "ts"), (capture: "order", key: "order_id"),
        (capture: "invoice", key: "invoice"),
      ],
      attributes: ["invoice", "invoice_no"],
      whereClauses: [(capture: "invoice", pattern: #"^INV-(?<invoice_no>\d+)$"#)])
    let rule = try CompiledRule(def, library: PatternLibrary())
    XCTAssertEqual(rule.captureNames, ["ts", "order", "invoice", "invoice_no"])
    let e = try event(outcome("ts=2026-03-29T00:59:58Z order_id=1 invoice=INV-64839", [def]))
    XCTAssertEqual(attributes(e), ["invoice": "INV-64839", "invoice_no": "64839"])
  }

  func testWhereCaptureAbsentFromARecordDoesNotKeepThePreviousRecordsValue() throws {
    let def = logfmtRule(
      [(capture: "ts", key: "ts"), (capture: "order", key: "o"), (capture: "msg", key: "msg")],
      attributes: ["code"],
      whereClauses: [(capture: "msg", pattern: #"^done(?: code=(?<code>\d+))?$"#)])
    let ev = try evaluator([def])
    XCTAssertEqual(
      attributes(try event(evaluate(ev, #"ts=2026-03-29T00:59:58Z o=1 msg="done code=7""#))),
      ["code": "7"])
    XCTAssertEqual(
      attributes(try event(evaluate(ev, "ts=2026-03-29T00:59:58Z o=2 msg=done"))), [:],
      "a capture of the previous record leaked into this one")
  }

  func testWhereOnAPatternRuleFailsToCompile() {
    var def = statusRule()
    def.whereClauses = [(capture: "status", pattern: "^PAID$")]
    let error = compileError(def)
    XCTAssertEqual(error?.field, "where")
    XCTAssertTrue(error?.message.contains("put the condition into the pattern") == true)
  }

  func testWhereOnAnUnknownCaptureFailsToCompile() {
    let error = compileError(
      logfmtRule(
        [(capture: "ts", key: "ts"), (capture: "order", key: "o")],
        whereClauses: [(capture: "msg", pattern: "x")]))
    XCTAssertEqual(error?.field, "where.msg")
    XCTAssertTrue(error?.message.contains("ts, order") == true, "\(String(describing: error))")
  }

  func testInvalidWherePatternFailsToCompile() {
    let error = compileError(
      logfmtRule(
        [(capture: "ts", key: "ts"), (capture: "order", key: "o")],
        whereClauses: [(capture: "order", pattern: "(")]))
    XCTAssertEqual(error?.field, "where.order")
  }

  // MARK: Timestamps

  private func timeRule(
    _ format: String, timezone: String? = nil, pattern: String = #"^(?<ts>.+) order (?<order>\d+)$"#
  ) -> RuleDefinition {
    RuleDefinition(
      name: "t", sources: ["mes"], matcher: .pattern(pattern), timestampFormat: format,
      timezone: timezone,
      event: EventTemplate(orderID: "${order}"))
  }

  func testISO8601TimestampWithOffsetIgnoresTheSourceZone() throws {
    let e = try event(
      outcome("2026-03-29T01:59:58.123+01:00 order 5", [timeRule("iso8601")], zone: "Europe/Moscow")
    )
    XCTAssertEqual(e.timeUnixNano, utc005958 * nanos + 123_000_000)
  }

  func testTimestampCarryingItsOwnOffsetIsRecordedWithZoneRuleOffset() throws {
    // OrderEvent.zoneRule: "`offset` when the text carried its own offset, else the IANA zone applied".
    let withOffset = try event(
      outcome("2026-03-29T01:59:58+01:00 order 5", [timeRule("iso8601")], zone: "Europe/Moscow"))
    XCTAssertEqual(withOffset.zoneRule, "offset")
    let local = try event(
      outcome("2026-03-29T01:59:58 order 5", [timeRule("iso8601")], zone: "Europe/Moscow"))
    XCTAssertEqual(local.zoneRule, "Europe/Moscow")
  }

  func testZonelessTimestampIsReadInTheSourceZone() throws {
    let rule = timeRule("dd.MM.yyyy HH:mm:ss.SSS")
    let e = try event(outcome("28.03.2026 13:37:27.599 order 5", [rule], zone: "Europe/Moscow"))
    XCTAssertEqual(e.timeUnixNano, utc103727 * nanos + 599_000_000)
    XCTAssertEqual(e.zoneRule, "Europe/Moscow")
    let utc = try event(outcome("28.03.2026 13:37:27.599 order 5", [rule], zone: "UTC"))
    XCTAssertEqual(utc.timeUnixNano - e.timeUnixNano, 3 * 3600 * nanos)
  }

  func testRuleTimezoneOverridesTheSourceZoneAcrossADSTChange() throws {
    let rule = timeRule("yyyy-MM-dd HH:mm:ss", timezone: "Europe/Berlin")
    let ev = try evaluator([rule], zone: "Europe/Moscow")
    let before = try event(evaluate(ev, "2026-03-29 01:59:59 order 5"))
    XCTAssertEqual(before.timeUnixNano, 1_774_745_999 * nanos, "CET, UTC+1")
    XCTAssertEqual(before.zoneRule, "Europe/Berlin")
    let after = try event(evaluate(ev, "2026-03-29 03:00:00 order 5"))
    XCTAssertEqual(
      after.timeUnixNano, 1_774_746_000 * nanos, "CEST, UTC+2: one second after 01:59:59")
    let winter = try event(evaluate(ev, "2026-01-15 09:00:00 order 5"))
    XCTAssertEqual(winter.timeUnixNano, 1_768_464_000 * nanos)
    let overlap = try event(evaluate(ev, "2026-10-25 02:30:00 order 5"))
    XCTAssertEqual(
      overlap.timeUnixNano, 1_792_888_200 * nanos, "an ambiguous time is the earlier instant")
  }

  func testRuleTimezoneUTCOverridesALocalSourceZone() throws {
    let e = try event(
      outcome(
        "2026-03-29 00:59:58 order 5", [timeRule("yyyy-MM-dd HH:mm:ss", timezone: "UTC")],
        zone: "Europe/Berlin"))
    XCTAssertEqual(e.timeUnixNano, utc005958 * nanos)
    XCTAssertEqual(e.zoneRule, "UTC")
  }

  func testEpochMillisTimestampIgnoresTheZone() throws {
    let e = try event(
      outcome("1774749598123 order 5", [timeRule("epoch_millis")], zone: "Europe/Moscow"))
    XCTAssertEqual(e.timeUnixNano, 1_774_749_598_123_000_000)
  }

  func testEpochSecondsTimestamp() throws {
    let e = try event(outcome("1774749598.5 order 5", [timeRule("epoch_seconds")]))
    XCTAssertEqual(e.timeUnixNano, 1_774_749_598_500_000_000)
  }

  func testUnparseableTimestampIsRejectedAsBadTimestamp() throws {
    let ev = try evaluator([timeRule("iso8601"), statusRule()])
    for text in [
      "yesterday order 5", "2026-13-01T00:00:00Z order 5", "2026-02-30T00:00:00Z order 5",
    ] {
      let o = evaluate(ev, text)
      XCTAssertEqual(rejection(o)?.rule, 0, text)
      XCTAssertEqual(rejection(o)?.reason, .badTimestamp, text)
    }
    XCTAssertEqual(RejectReason.badTimestamp.rawValue, "bad_timestamp")
  }

  func testAbsentTimestampCaptureIsRejectedAsMissingTimestamp() throws {
    let def = timeRule("iso8601", pattern: #"^(?:(?<ts>\S+Z) )?order (?<order>\d+)$"#)
    XCTAssertEqual(rejection(try outcome("order 5", [def]))?.reason, .missingTimestamp)
    let json = jsonRule([(capture: "ts", pointer: "/ts"), (capture: "order", pointer: "/o")])
    XCTAssertEqual(rejection(try outcome(#"{"ts":"","o":"5"}"#, [json]))?.reason, .missingTimestamp)
  }

  func testTimestampFieldCanNameAnotherCapture() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(#"^(?<time>\S+) order (?<order>\d+)$"#),
      timestampField: "time", event: EventTemplate(orderID: "${order}"))
    XCTAssertEqual(
      try event(outcome("2026-03-29T00:59:58Z order 5", [def])).timeUnixNano, utc005958 * nanos)
  }

  func testTimestampFieldThatIsNoCaptureFailsToCompile() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(#"^(?<time>\S+) order (?<order>\d+)$"#),
      event: EventTemplate(orderID: "${order}"))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "timestamp.field")
    XCTAssertTrue(error?.message.contains("no capture named 'ts'") == true)
    XCTAssertTrue(error?.message.contains("time, order") == true)
  }

  func testBadTimestampFormatFailsToCompile() {
    let error = compileError(timeRule("dd.MM.yyyy hh:mm"))
    XCTAssertEqual(error?.field, "timestamp.format")
    XCTAssertTrue(error?.message.contains("'hh'") == true, "\(String(describing: error))")
  }

  func testUnknownRuleTimezoneFailsToCompile() {
    let error = compileError(timeRule("iso8601", timezone: "Europe/Atlantis"))
    XCTAssertEqual(error?.field, "timestamp.timezone")
    XCTAssertTrue(error?.message.contains("Europe/Atlantis") == true)
  }

  // MARK: Event kinds

  func testEveryDocumentedEventKindIsAccepted() throws {
    XCTAssertEqual(
      StageKind.allCases.map(\.rawValue),
      [
        "status_change", "step_start", "step_end", "bus_publish", "bus_consume", "db_write",
        "file_link", "log",
      ])
    for kind in StageKind.allCases {
      let def = RuleDefinition(
        name: "k", sources: ["mes"],
        matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+) (?<what>\w+)$"#),
        event: EventTemplate(orderID: "${order}", kind: kind.rawValue, status: "S", step: "${what}")
      )
      let e = try event(outcome("2026-03-29T00:59:58Z order 5 cutting", [def]))
      XCTAssertEqual(e.kind, kind)
    }
  }

  func testEventKindDefaultsToLog() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+)$"#),
      event: EventTemplate(orderID: "${order}"))
    XCTAssertEqual(try event(outcome("2026-03-29T00:59:58Z order 5", [def])).kind, .log)
  }

  func testStepEventsCarryTheStepName() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"],
      matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+) start "(?<step>[^"]+)"$"#),
      event: EventTemplate(orderID: "${order}", kind: "step_start", step: "${step}"))
    let e = try event(outcome(#"2026-03-29T00:59:58Z order 5 start "Раскрой""#, [def]))
    XCTAssertEqual(e.kind, .stepStart)
    XCTAssertEqual(e.step, "Раскрой")
  }

  func testUnknownEventKindFailsToCompileListingTheKinds() {
    let error = compileError(statusRule(kind: "status-change"))
    XCTAssertEqual(error?.field, "event.kind")
    XCTAssertTrue(error?.message.contains("unknown kind 'status-change'") == true)
    XCTAssertTrue(error?.message.contains("status_change, step_start") == true)
  }

  func testStatusChangeWithoutStatusFailsToCompile() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+)$"#),
      event: EventTemplate(orderID: "${order}", kind: "status_change"))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "event.status")
    XCTAssertTrue(error?.message.contains("needs status:") == true)
  }

  func testStepKindsWithoutStepFailToCompile() {
    for kind in ["step_start", "step_end"] {
      let def = RuleDefinition(
        name: "r", sources: ["mes"], matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+)$"#),
        event: EventTemplate(orderID: "${order}", kind: kind))
      let error = compileError(def)
      XCTAssertEqual(error?.field, "event.step", kind)
      XCTAssertTrue(error?.message.contains("a \(kind) event needs step:") == true, kind)
    }
  }

  // MARK: Aliases and links

  private let jobPattern =
    #"^(?<ts>\S+) job (?<job>J-\d+)(?: for order (?<order>\d+))?: (?<what>.*)$"#

  func testAliasEventIsKeyedByTheAlias() throws {
    let def = RuleDefinition(
      name: "mes-job-status", sources: ["mes"], matcher: .pattern(jobPattern),
      event: EventTemplate(
        aliasKind: "mes_job", aliasKey: "${job}", kind: "status_change", status: "${what}"))
    let e = try event(outcome("2026-03-29T00:59:58Z job J-00077: PRODUCED", [def]))
    XCTAssertEqual(e.key, .alias(AliasKey(kind: "mes_job", key: "J-00077")))
    XCTAssertEqual(e.status, "PRODUCED")
    XCTAssertNil(e.link)
  }

  func testAliasEventWithMissingKeyIsRejected() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(#"^(?<ts>\S+) job(?: (?<job>J-\d+))?$"#),
      event: EventTemplate(aliasKind: "mes_job", aliasKey: "${job}"))
    XCTAssertEqual(
      rejection(try outcome("2026-03-29T00:59:58Z job", [def]))?.reason, .missingOrderID)
  }

  func testLinkOnlyRuleProducesAFileLinkEventKeyedByTheOrder() throws {
    let def = RuleDefinition(
      name: "mes-job-created", sources: ["mes"], matcher: .pattern(jobPattern),
      link: LinkTemplate(kind: "mes_job", key: "${job}", orderID: "${order}"))
    let e = try event(outcome("2026-03-29T00:59:58Z job J-00077 for order 1234567: created", [def]))
    XCTAssertEqual(e.key, .order("1234567"))
    XCTAssertEqual(e.kind, .fileLink)
    XCTAssertEqual(
      e.link, AliasLink(alias: AliasKey(kind: "mes_job", key: "J-00077"), orderID: "1234567"))
    XCTAssertEqual(e.name, "mes_job J-00077 linked")
    XCTAssertEqual(attributes(e), ["tracebridge.alias": "mes_job:J-00077"])
    XCTAssertEqual(e.rule, "mes-job-created")
    XCTAssertEqual(e.timeUnixNano, utc005958 * nanos)
  }

  func testLinkWithMissingOrderCaptureIsRejectedAsMissingOrderID() throws {
    let def = RuleDefinition(
      name: "link", sources: ["mes"], matcher: .pattern(jobPattern),
      link: LinkTemplate(kind: "mes_job", key: "${job}", orderID: "${order}"))
    XCTAssertEqual(
      rejection(try outcome("2026-03-29T00:59:58Z job J-1: created", [def]))?.reason,
      .missingOrderID)
  }

  func testRuleWithLinkAndEventWithoutOrderIDUsesTheLinkedOrder() throws {
    let def = RuleDefinition(
      name: "created", sources: ["mes"], matcher: .pattern(jobPattern),
      event: EventTemplate(kind: "step_start", step: "production"),
      link: LinkTemplate(kind: "mes_job", key: "${job}", orderID: "${order}"))
    let e = try event(outcome("2026-03-29T00:59:58Z job J-7 for order 42: created", [def]))
    XCTAssertEqual(e.key, .order("42"))
    XCTAssertEqual(e.kind, .stepStart)
    XCTAssertEqual(e.step, "production")
    XCTAssertEqual(e.link, AliasLink(alias: AliasKey(kind: "mes_job", key: "J-7"), orderID: "42"))
  }

  func testEventWithBothOrderIDAndAliasFailsToCompile() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(jobPattern),
      event: EventTemplate(orderID: "${order}", aliasKind: "mes_job", aliasKey: "${job}"))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "event.alias")
    XCTAssertTrue(error?.message.contains("either order_id or alias, not both") == true)
  }

  func testAliasWithoutKeyFailsToCompile() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(jobPattern),
      event: EventTemplate(aliasKind: "mes_job"))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "event.alias")
    XCTAssertTrue(error?.message.contains("needs both kind and key") == true)
  }

  func testEventWithoutOrderAliasOrLinkFailsToCompile() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(jobPattern), event: EventTemplate(kind: "log"))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "event.order_id")
    XCTAssertTrue(error?.message.contains("say which order") == true)
  }

  func testRuleProducingNothingFailsToCompile() {
    let def = RuleDefinition(name: "r", sources: ["mes"], matcher: .pattern(jobPattern))
    let error = compileError(def)
    XCTAssertEqual(error?.field, "event")
    XCTAssertTrue(error?.message.contains("give it an event: and/or a link:") == true)
  }

  func testLinkKindMustBeAFixedName() {
    let def = RuleDefinition(
      name: "r", sources: ["mes"], matcher: .pattern(jobPattern),
      link: LinkTemplate(kind: "${what}", key: "${job}", orderID: "${order}"))
    XCTAssertEqual(compileError(def)?.field, "link.kind")
  }

  // MARK: Rule order

  func testFirstMatchingRuleWins() throws {
    var specific = statusRule("specific", status: "PAID")
    specific.matcher = .pattern(#"^(?<ts>\S+) order (?<order>\d+) status (?<status>PAID)$"#)
    let general = statusRule("general")
    let line = "2026-03-29T00:59:58Z order 5 status PAID"

    let first = try outcome(line, [specific, general])
    XCTAssertEqual(matchedRule(first), 0)
    XCTAssertEqual(try event(first).rule, "specific")

    let swapped = try outcome(line, [general, specific])
    XCTAssertEqual(matchedRule(swapped), 0)
    XCTAssertEqual(try event(swapped).rule, "general")

    XCTAssertEqual(
      try event(outcome("2026-03-29T00:59:58Z order 5 status NEW", [specific, general])).rule,
      "general")
  }

  func testRejectingRuleStopsTheSearch() throws {
    // The first rule matches but its time is bad: the record is rejected, not handed on.
    let o = try outcome("notatime order 5 status PAID", [statusRule("a"), statusRule("b")])
    XCTAssertEqual(rejection(o)?.rule, 0)
    XCTAssertEqual(rejection(o)?.reason, .badTimestamp)
  }

  func testOutcomeNamesTheRuleByItsIndexInTheWholeRuleSet() throws {
    var other = statusRule("other")
    other.matcher = .pattern(#"^(?<ts>\S+) never (?<order>\d+) (?<status>\w+)$"#)
    let ev = try evaluator([other, statusRule("status")], indices: [4, 9])
    XCTAssertEqual(matchedRule(evaluate(ev, "2026-03-29T00:59:58Z order 5 status PAID")), 9)
    XCTAssertEqual(rejection(evaluate(ev, "x order 5 status PAID"))?.rule, 9)
  }

  func testRecordNoRuleMatchesIsUnmatched() throws {
    XCTAssertTrue(isUnmatched(try outcome("something else entirely", [statusRule()])))
    XCTAssertTrue(isUnmatched(try outcome("", [statusRule()])))
    XCTAssertTrue(isUnmatched(try outcome("anything", [])))
  }

  // MARK: Attributes, user id, name

  func testAttributesKeepTheirOrderAndUserIDBecomesTheEndUser() throws {
    let def = RuleDefinition(
      name: "created", sources: ["shop"],
      matcher: .pattern(
        #"^(?<ts>\S+) Order (?<order>\d+) created by user (?<user>u\d+) channel=(?<channel>\w+) total=(?<total>[\d.]+)$"#
      ),
      event: EventTemplate(
        orderID: "${order}", kind: "status_change", status: "CREATED", userID: "${user}",
        attributes: [
          (key: "shop.channel", value: "${channel}"), (key: "order.total", value: "${total}"),
          (key: "app", value: "shop"),
        ]))
    let e = try event(
      outcome(
        "2026-03-29T00:59:58Z Order 5533012 created by user u1031 channel=web total=2496.32", [def])
    )
    XCTAssertEqual(e.userID, "u1031")
    XCTAssertEqual(
      e.attributes,
      [
        Attribute("shop.channel", "web"), Attribute("order.total", "2496.32"),
        Attribute("app", "shop"),
      ])
  }

  func testEventNameTemplateReplacesTheRuleName() throws {
    let def = RuleDefinition(
      name: "r", sources: ["mes"],
      matcher: .pattern(#"^(?<ts>\S+) order (?<order>\d+) (?<what>\w+)$"#),
      event: EventTemplate(orderID: "${order}", name: "order ${what}"))
    let e = try event(outcome("2026-03-29T00:59:58Z order 5 confirmed", [def]))
    XCTAssertEqual(e.name, "order confirmed")
    XCTAssertEqual(e.rule, "r")
  }
}
