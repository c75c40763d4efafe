import Exporters
import Foundation
import LogParsers
import TraceBridge
import TraceBridgeCore
import XCTest

/// The configuration contract of docs/configuration.md: every problem is reported at once,
/// each with the line it is on and what to change; relative paths resolve against the file.
final class ConfigurationLoaderTests: XCTestCase {
  private let file = "/tmp/x/tracebridge.yaml"

  // MARK: Building blocks

  private let header = #"""
    namespace: test
    ids:
      secret: test-secret-123
    """#

  private let mesSource = #"""
    sources:
      - name: mes
        service: MES
        paths: [logs/mes.log]
    """#

  private let mesRule = #"""
    rules:
      - name: mes-status
        source: mes
        pattern: '^(?<ts>\S+) job (?<job>J-\d+): status (?<status>\w+)'
        event:
          alias: {kind: mes_job, key: '${job}'}
          kind: status_change
          status: '${status}'
    """#

  private func config(_ parts: String...) -> String {
    parts.joined(separator: "\n") + "\n"
  }

  // MARK: Helpers

  private func issues(_ text: String, environment: [String: String] = [:]) -> [ConfigurationIssue] {
    do {
      _ = try ConfigurationLoader.parse(text, file: file, environment: environment)
      XCTFail("expected the configuration to be rejected:\n\(text)")
      return []
    } catch {
      XCTAssertTrue(error.issues.allSatisfy { $0.file == file })
      return error.issues
    }
  }

  private func parse(_ text: String, file: String? = nil, environment: [String: String] = [:])
    throws -> Configuration
  {
    do {
      return try ConfigurationLoader.parse(text, file: file ?? self.file, environment: environment)
    } catch {
      XCTFail("unexpected issues:\n\(error.description)")
      throw error
    }
  }

  /// 1-based number of the `occurrence`-th line of `text` containing `needle`.
  private func line(of needle: String, in text: String, occurrence: Int = 1) -> Int? {
    var seen = 0
    for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
    where l.contains(needle) {
      seen += 1
      if seen == occurrence { return i + 1 }
    }
    return nil
  }

  /// Asserts that exactly one issue mentions all of `phrases`, that it is on `line`, and returns it.
  @discardableResult
  private func assertIssue(
    _ issues: [ConfigurationIssue], line expectedLine: Int?, mentions phrases: [String],
    file: StaticString = #filePath, line: UInt = #line
  ) -> ConfigurationIssue? {
    let found = issues.filter { issue in phrases.allSatisfy { issue.message.contains($0) } }
    guard found.count == 1, let issue = found.first else {
      XCTFail(
        "expected one issue mentioning \(phrases), got:\n\(issues.map(\.description).joined(separator: "\n"))",
        file: file, line: line)
      return nil
    }
    XCTAssertNotNil(
      expectedLine, "the test must say on which line the issue is", file: file, line: line)
    XCTAssertEqual(issue.line, expectedLine, "line of: \(issue.message)", file: file, line: line)
    return issue
  }

  // MARK: The file as a whole

  func testYAMLSyntaxErrorIsReportedWithItsLine() {
    let text = "namespace: test\nids:\n  secret: abc: def\nsources: []\n"
    let found = issues(text)
    XCTAssertEqual(found.count, 1)
    XCTAssertEqual(found.first?.line, 3)
    XCTAssertTrue(found.first?.message.hasPrefix("YAML syntax error: ") == true, "\(found)")
    XCTAssertTrue(found.first?.message.contains("mapping values") == true, "\(found)")
    XCTAssertEqual(
      found.first?.description.hasPrefix("/tmp/x/tracebridge.yaml:3: YAML syntax error"), true)
  }

  func testEmptyFileIsReportedAndPointsAtTheExample() {
    for text in ["", "\n\n", "# nothing but a comment\n"] {
      let found = issues(text)
      XCTAssertEqual(found.count, 1, text.debugDescription)
      XCTAssertNil(found.first?.line)
      XCTAssertEqual(found.first?.message, "the file is empty; see examples/tracebridge.yaml")
      XCTAssertEqual(
        found.first?.description,
        "/tmp/x/tracebridge.yaml: the file is empty; see examples/tracebridge.yaml")
    }
  }

  func testTopLevelThatIsNotAMappingIsReported() {
    let found = issues("- just\n- a list\n")
    assertIssue(found, line: 1, mentions: ["the configuration must be a mapping"])
  }

  func testMissingIDsIsReportedWithAnExample() {
    let text = config("namespace: test", mesSource, mesRule)
    let found = issues(text)
    assertIssue(found, line: 1, mentions: ["missing 'ids'", "secret_env: TRACEBRIDGE_ID_SECRET"])
    XCTAssertEqual(found.count, 1)
  }

  func testMissingSourcesIsReported() {
    let found = issues(config(header, mesRule))
    assertIssue(found, line: 1, mentions: ["missing 'sources'", "list the log files"])
  }

  func testMissingRulesIsReported() {
    let found = issues(config(header, mesSource))
    assertIssue(found, line: 1, mentions: ["missing 'rules'", "say how lines become order events"])
  }

  func testMisspelledTopLevelKeyIsReportedOnItsLine() {
    let text = config(
      header, mesSource.replacingOccurrences(of: "sources:", with: "sorces:"), mesRule)
    let found = issues(text)
    assertIssue(
      found, line: line(of: "sorces:", in: text), mentions: ["unknown key 'sorces'", "sources"])
  }

  // MARK: ids

  func testIDsWithTwoSecretsIsReported() {
    let text = config(
      "ids: {secret: test-secret-123, secret_env: TB_SECRET}", mesSource, mesRule)
    let found = issues(text, environment: ["TB_SECRET": "another-secret"])
    assertIssue(
      found, line: 1, mentions: ["ids needs exactly one of secret, secret_env, secret_file"])
    XCTAssertEqual(found.count, 1)
  }

  func testIDsWithNoSecretIsReported() {
    let text = config("namespace: test", "ids: {}", mesSource, mesRule)
    assertIssue(issues(text), line: 2, mentions: ["ids needs exactly one of"])
  }

  func testUnsetSecretEnvironmentVariableIsReported() {
    let text = config("namespace: test", "ids:", "  secret_env: TB_SECRET", mesSource, mesRule)
    let found = issues(text, environment: ["OTHER": "x"])
    assertIssue(found, line: 3, mentions: ["TB_SECRET is not set", "export it or use secret_file"])
    XCTAssertEqual(
      try parse(text, environment: ["TB_SECRET": "0123456789abcdef"]).secret,
      Array("0123456789abcdef".utf8))
  }

  func testTooShortSecretIsReported() {
    let text = config("namespace: test", "ids:", "  secret: short", mesSource, mesRule)
    assertIssue(issues(text), line: 3, mentions: ["too short", "at least 8 characters"])
  }

  func testUnreadableSecretFileIsReported() {
    let text = config("ids:", "  secret_file: no/such/secret", mesSource, mesRule)
    assertIssue(issues(text), line: 2, mentions: ["cannot read /tmp/x/no/such/secret"])
  }

  func testSecretFileIsResolvedAgainstTheConfigDirectoryAndLosesItsNewline() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "ConfigurationLoaderTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try Data("file-secret-1234\n".utf8).write(to: dir.appendingPathComponent("id.secret"))
    let text = config("ids:", "  secret_file: id.secret", mesSource, mesRule)
    let c = try parse(text, file: dir.appendingPathComponent("tracebridge.yaml").path)
    XCTAssertEqual(c.secret, Array("file-secret-1234".utf8))
  }

  // MARK: Sources

  private func sourceIssues(_ extra: String) -> (text: String, issues: [ConfigurationIssue]) {
    let text = config(header, mesSource, extra, mesRule)
    return (text, issues(text))
  }

  func testUnknownEncodingIsReported() {
    let (text, found) = sourceIssues("    encoding: klingon-8")
    assertIssue(
      found, line: line(of: "klingon", in: text),
      mentions: ["source 'mes'", "unknown charset 'klingon-8'", "iconv -l"])
  }

  func testUnknownTimezoneIsReported() {
    let (text, found) = sourceIssues("    timezone: Mars/Olympus")
    assertIssue(
      found, line: line(of: "Mars/Olympus", in: text),
      mentions: ["source 'mes'", "unknown time zone 'Mars/Olympus'", "Europe/Moscow"])
  }

  func testBadMultilinePatternIsReported() {
    let (text, found) = sourceIssues("    multiline:\n      start: '^(\\d{2}'")
    assertIssue(
      found, line: line(of: "start:", in: text),
      mentions: ["source 'mes'", "multiline.start", "invalid pattern"])
  }

  func testMaxLineBytesBelow256IsReported() {
    let (text, found) = sourceIssues("    max_line_bytes: 100")
    assertIssue(
      found, line: line(of: "max_line_bytes", in: text),
      mentions: ["max_line_bytes must be at least 256"])
    let (zeroText, zero) = sourceIssues("    max_line_bytes: 0")
    assertIssue(
      zero, line: line(of: "max_line_bytes", in: zeroText),
      mentions: ["max_line_bytes must be a whole number greater than 0"])
  }

  func testUnknownSourceKeyIsReported() {
    let (text, found) = sourceIssues("    timezon: Europe/Moscow")
    assertIssue(
      found, line: line(of: "timezon:", in: text), mentions: ["unknown key 'timezon'", "timezone"])
  }

  func testSourceWithoutServiceOrPathsIsReported() {
    let text = config(
      header, "sources:", "  - name: mes", "    paths: [a.log]", "  - name: crm",
      "    service: CRM", mesRule)
    let found = issues(text)
    assertIssue(
      found, line: line(of: "- name: mes", in: text), mentions: ["source 'mes' needs service:"])
    assertIssue(
      found, line: line(of: "- name: crm", in: text), mentions: ["source 'crm' needs paths:"])
  }

  func testDuplicateSourceNameIsReportedOnTheSecondDefinition() {
    let text = config(
      header, mesSource, "  - name: mes", "    service: MES2", "    paths: [b.log]", mesRule)
    assertIssue(
      issues(text), line: line(of: "- name: mes", in: text, occurrence: 2),
      mentions: ["source 'mes' is defined twice"])
  }

  func testSourceWithoutAnyRuleIsReported() {
    let text = config(
      header, mesSource, "  - name: crm", "    service: CRM", "    paths: [crm.log]", mesRule)
    let found = issues(text)
    assertIssue(
      found, line: line(of: "- name: crm", in: text),
      mentions: ["source 'crm' has no rule", "add a rule with source: crm"])
    XCTAssertEqual(found.count, 1)
  }

  // MARK: Rules

  /// The base config with one extra rule (YAML lines indented as under `rules:`).
  private func ruleIssues(_ rule: String) -> (text: String, issues: [ConfigurationIssue]) {
    let text = config(header, mesSource, mesRule, rule)
    return (text, issues(text))
  }

  // MARK: Rules of queue sources (message bodies)

  private let busSource = #"""
      - name: bus
        service: MES
        amqp: {queue: mes.events}
    amqp: {url: 'amqp://localhost:5672/'}
    """#

  /// A configuration with the file source `mes`, the queue source `bus`, and `rule`.
  private func messageRuleIssues(_ rule: String) -> (text: String, issues: [ConfigurationIssue]) {
    let text = config(header, mesSource, busSource, mesRule, rule)
    return (text, issues(text))
  }

  func testMessageRulesParseWithEveryKey() throws {
    let text = config(
      header, mesSource, busSource, mesRule,
      #"""
        - name: job
          source: bus
          when: {routing_key: 'mes.#', type: JobStarted, content_type: application/xml, headers: {x-plant: P1}}
          body: xml
          xml: {job: '/m:Job/@id', ts: '/m:Job/m:Time'}
          namespaces: {m: 'urn:mes'}
          message: {mid: /properties/message_id}
          timestamp: {format: 'dd.MM.yyyy HH:mm:ss'}
          event: {alias: {kind: mes_job, key: '${job}'}, attributes: {mid: '${mid}'}}
        - name: seen
          source: bus
          pattern: '^SEEN (?<order>\d+)'
          timestamp: {from: received}
          event: {order_id: '${order}'}
      """#)
    let c = try parse(text)
    XCTAssertEqual(c.rules.map(\.matcherKind), ["pattern", "xml", "pattern"])
  }

  func testXMLOnAFileSourceIsReportedOnItsLine() {
    let (text, found) = messageRuleIssues(
      #"""
        - name: other
          source: mes
          xml: {order: /Job/@order, ts: /Job/Time}
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "xml: {order", in: text),
      mentions: ["rule 'other': xml: applies to RabbitMQ messages", "source 'mes' reads files"])
  }

  func testUnknownNamespacePrefixIsReportedOnTheFieldsLine() {
    let (text, found) = messageRuleIssues(
      #"""
        - name: other
          source: bus
          xml:
            order: '/q:Job/@order'
            ts: /Job/Time
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "order: '/q:Job", in: text),
      mentions: ["rule 'other': xml.order", "unknown namespace prefix 'q'"])
  }

  func testBadMessageFieldIsReportedOnItsLine() {
    let (text, found) = messageRuleIssues(
      #"""
        - name: other
          source: bus
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          message:
            mid: /properties/msgid
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "mid: /properties/msgid", in: text),
      mentions: ["rule 'other': message.mid", "neither /properties/<name>", "message_id"])
  }

  func testUnknownTimestampSourceAndFieldsThatDoNotApplyAreReported() {
    let (text, found) = messageRuleIssues(
      #"""
        - name: other
          source: bus
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          timestamp: {from: header}
          event: {order_id: '${order}'}
        - name: third
          source: bus
          pattern: '^(?<order>\d+)'
          timestamp:
            from: amqp
            format: iso8601
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "timestamp: {from: header}", in: text),
      mentions: ["timestamp.from: 'header' is not one of field", "amqp", "received"])
    assertIssue(
      found, line: line(of: "format: iso8601", in: text),
      mentions: ["rule 'third': timestamp.format applies to from: field only"])
  }

  func testTimeFromAMQPOnAFileSourceIsReported() {
    let (text, found) = messageRuleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<order>\d+)'
          timestamp: {from: amqp}
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "timestamp: {from: amqp}", in: text),
      mentions: ["timestamp.from: amqp applies to RabbitMQ messages", "use from: field"])
  }

  func testBadWhenAndBodyAreReportedOnTheirLines() {
    let (text, found) = messageRuleIssues(
      #"""
        - name: other
          source: bus
          when:
            routing: 'mes.#'
            content_type: 'application/xml; charset=utf-8'
          body: yaml
          json: {order: /body/o, ts: /body/t}
          event: {order_id: '${order}'}
        - name: third
          source: bus
          body: xml
          json: {order: /body/o, ts: /body/t}
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "routing: 'mes.#'", in: text),
      mentions: ["unknown key 'routing' in rule 'other': when", "routing_key"])
    assertIssue(
      found, line: line(of: "content_type: 'application/xml; charset", in: text),
      mentions: ["when.content_type is compared without parameters", "'application/xml'"])
    assertIssue(
      found, line: line(of: "body: yaml", in: text),
      mentions: ["body: 'yaml' is not one of auto"])
    assertIssue(
      found, line: line(of: "body: xml", in: text),
      mentions: ["rule 'third': body: a json rule reads the body as json, not xml"])
  }

  func testNamespacesWithoutXMLAreReported() {
    let (text, found) = messageRuleIssues(
      #"""
        - name: other
          source: bus
          json: {order: /body/o, ts: /body/t}
          namespaces: {m: 'urn:mes'}
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "namespaces: {m:", in: text),
      mentions: ["rule 'other': namespaces applies to xml: rules only"])
  }

  func testDuplicateRuleNameIsReportedOnTheSecondDefinition() {
    let (text, found) = ruleIssues(
      #"""
        - name: mes-status
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "- name: mes-status", in: text, occurrence: 2),
      mentions: ["rule 'mes-status' is defined twice"])
  }

  func testRuleWithUnknownSourceIsReported() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mse
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "source: mse", in: text),
      mentions: ["rule 'other': no source named 'mse'", "sources are: mes"])
  }

  func testRuleWithoutSourceIsReported() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "- name: other", in: text), mentions: ["rule 'other' needs source:"])
  }

  func testRuleWithoutPatternJSONOrLogfmtIsReported() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "- name: other", in: text),
      mentions: ["rule 'other' needs exactly one of pattern:, json:, logfmt: or xml:"])
  }

  func testRuleWithTwoMatchersIsReported() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          json: {ts: /ts, order: /order}
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "- name: other", in: text),
      mentions: ["rule 'other' needs exactly one of pattern:, json:, logfmt: or xml:"])
  }

  func testInvalidPatternIsReportedOnThePatternLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+ (?<order>\d+)'
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: #"pattern: '^(?<ts>\S+ ("#, in: text),
      mentions: ["rule 'other': pattern: invalid pattern at offset"])
  }

  func testUnknownSubPatternIsReportedOnThePatternLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^%{TIMESTAMP_ISO8601:ts} %{ORDER_ID:order}'
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "%{ORDER_ID:order}", in: text),
      mentions: ["unknown sub-pattern %{ORDER_ID}", "define it under 'patterns:'"])
  }

  func testInvalidCustomPatternIsReportedOnItsLine() {
    let text = config(header, "patterns:", "  ORDER_ID: '(\\d+'", mesSource, mesRule)
    assertIssue(
      issues(text), line: line(of: "ORDER_ID:", in: text),
      mentions: ["pattern 'ORDER_ID'", "invalid pattern"])
  }

  func testUnknownCaptureInEventStatusIsReportedOnTheStatusLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: mes-status-2
          source: mes
          pattern: '^(?<ts>\S+) job (?<job>J-\d+): status (?<status>\w+)'
          event:
            alias: {kind: mes_job, key: '${job}'}
            kind: status_change
            status: '${stat}'
      """#)
    let issue = assertIssue(
      found, line: line(of: "status: '${stat}'", in: text), mentions: ["unknown capture '${stat}'"])
    XCTAssertEqual(
      issue?.message,
      "rule 'mes-status-2': event.status: unknown capture '${stat}'; the rule defines: ts, job, status"
    )
  }

  func testUnknownCaptureInADottedAttributeIsReportedOnThatAttributesLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          event:
            order_id: '${order}'
            attributes:
              order.id: '${order}'
              order.total: '${total}'
      """#)
    assertIssue(
      found, line: line(of: "order.total:", in: text), mentions: ["unknown capture '${total}'"])
  }

  func testTimestampFieldThatIsNoCaptureIsReportedOnItsLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          timestamp:
            field: time
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "field: time", in: text),
      mentions: ["timestamp.field", "no capture named 'time'", "ts, order"])
  }

  func testBadTimestampFormatIsReportedOnItsLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          timestamp:
            format: 'dd.MM.yyyy hh:mm'
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "format: 'dd.MM.yyyy hh:mm'", in: text),
      mentions: ["timestamp.format", "unsupported token 'hh'"])
  }

  func testUnknownRuleTimezoneIsReportedOnItsLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          timestamp: {format: iso8601, timezone: Europe/Atlantis}
          event: {order_id: '${order}'}
      """#)
    assertIssue(
      found, line: line(of: "Europe/Atlantis", in: text),
      mentions: ["timestamp.timezone", "unknown time zone 'Europe/Atlantis'"])
  }

  func testUnknownEventKindIsReportedOnItsLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          event:
            order_id: '${order}'
            kind: status-change
      """#)
    assertIssue(
      found, line: line(of: "kind: status-change", in: text),
      mentions: ["unknown kind 'status-change'", "status_change"])
  }

  func testStatusChangeWithoutStatusIsReported() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
          event:
            order_id: '${order}'
            kind: status_change
      """#)
    assertIssue(
      found, line: line(of: "order_id: '${order}'", in: text),
      mentions: ["event.status", "needs status:"])
  }

  func testAliasWithoutKeyIsReportedOnTheAliasLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) job (?<job>J-\d+)'
          event:
            alias: {kind: mes_job}
      """#)
    assertIssue(
      found, line: line(of: "alias: {kind: mes_job}", in: text),
      mentions: ["an alias needs both kind and key"])
  }

  func testOrderIDAndAliasTogetherAreReported() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) job (?<job>J-\d+) (?<order>\d+)'
          event:
            order_id: '${order}'
            alias: {kind: mes_job, key: '${job}'}
      """#)
    assertIssue(
      found, line: line(of: "alias: {kind: mes_job, key: '${job}'}", in: text, occurrence: 2),
      mentions: ["give either order_id or alias, not both"])
  }

  func testRuleProducingNothingIsReported() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) (?<order>\d+)'
      """#)
    assertIssue(
      found, line: line(of: "- name: other", in: text),
      mentions: [
        "rule 'other': event: the rule produces nothing", "give it an event: and/or a link:",
      ])
  }

  func testLinkWithoutOrderIDIsReportedOnTheLinkLine() {
    let (text, found) = ruleIssues(
      #"""
        - name: other
          source: mes
          pattern: '^(?<ts>\S+) job (?<job>J-\d+) (?<order>\d+)'
          link: {kind: mes_job, key: '${job}'}
      """#)
    assertIssue(
      found, line: line(of: "link: {kind", in: text),
      mentions: ["link needs kind, key and order_id", "order_id: '${order}'"])
  }

  // MARK: Orders and exporter

  func testBadDurationIsReportedWithTheAcceptedForms() {
    let text = config(header, "orders:", "  horizon: 3 weeks", mesSource, mesRule)
    assertIssue(
      issues(text), line: 5,
      mentions: ["orders.horizon: '3 weeks' is not a duration", "500ms, 30s, 10m, 72h or 7d"])
  }

  func testExporterEndpointThatIsNotHTTPIsReported() {
    for endpoint in ["localhost:4318/v1/traces", "ftp://jaeger/v1/traces", "http://"] {
      let text = config(header, mesSource, mesRule, "exporter:", "  endpoint: \(endpoint)")
      assertIssue(
        issues(text), line: line(of: "endpoint:", in: text),
        mentions: ["'\(endpoint)' is not an http(s) URL", "http://jaeger:4318/v1/traces"])
    }
  }

  func testExporterWithEndpointAndFileIsReported() {
    let text = config(
      header, mesSource, mesRule, "exporter:", "  endpoint: http://jaeger:4318/v1/traces",
      "  file: out.jsonl")
    assertIssue(
      issues(text), line: line(of: "endpoint:", in: text),
      mentions: ["exporter: give endpoint or file, not both"])
  }

  func testUnknownCompressionIsReported() {
    let text = config(
      header, mesSource, mesRule, "exporter:", "  endpoint: http://jaeger:4318/v1/traces",
      "  compression: zstd")
    assertIssue(
      issues(text), line: line(of: "compression:", in: text),
      mentions: ["'zstd' is not supported; use gzip or none"])
  }

  /// Values beyond an Int64 of nanoseconds (and inf) used to trap in `Int64(v * factor)`.
  func testDurationTooLargeForNanosecondsIsReportedNotACrash() throws {
    for value in ["1e30h", "infs", "300000d"] {
      let text = config(header, "orders:", "  horizon: \(value)", mesSource, mesRule)
      assertIssue(issues(text), line: 5, mentions: ["orders.horizon: '\(value)' is not a duration"])
    }
  }

  // MARK: Several problems

  func testEveryProblemIsReportedAtOnce() {
    let text = config(
      header,
      "orders:",
      "  horizon: 3 weeks",
      mesSource,
      "    encoding: klingon-8",
      "  - name: crm",
      "    service: CRM",
      "    paths: [crm.log]",
      "    timezone: Mars/Olympus",
      mesRule.replacingOccurrences(of: "status: '${status}'", with: "status: '${stat}'"),
      "exporter:",
      "  compression: zstd")
    let found = issues(text)
    assertIssue(found, line: 5, mentions: ["orders.horizon"])
    assertIssue(found, line: line(of: "klingon", in: text), mentions: ["unknown charset"])
    assertIssue(found, line: line(of: "Mars/Olympus", in: text), mentions: ["unknown time zone"])
    assertIssue(
      found, line: line(of: "'${stat}'", in: text), mentions: ["unknown capture '${stat}'"])
    assertIssue(found, line: line(of: "compression:", in: text), mentions: ["use gzip or none"])
    XCTAssertGreaterThanOrEqual(found.count, 5)
    do {
      _ = try ConfigurationLoader.parse(text, file: file)
    } catch {
      let lines = error.description.split(separator: "\n")
      XCTAssertEqual(lines.count, found.count)
      XCTAssertTrue(lines.contains { $0.hasPrefix("/tmp/x/tracebridge.yaml:5: orders.horizon") })
    }
  }

  func testABrokenRuleDoesNotAlsoReportItsSourceAsHavingNoRule() {
    let text = config(
      header, mesSource,
      #"""
      rules:
        - name: mes-status
          source: mes
          pattern: '^(?<ts>\S+ job'
          event: {alias: {kind: mes_job, key: '${job}'}}
      """#)
    let found = issues(text)
    assertIssue(found, line: line(of: "pattern:", in: text), mentions: ["invalid pattern"])
    XCTAssertEqual(
      found.count, 1,
      "the source has a rule; only the rule is wrong:\n\(found.map(\.description).joined(separator: "\n"))"
    )
  }

  func testSourceWithABadEncodingIsNotAlsoReportedMissingByItsRules() {
    let text = config(header, mesSource, "    encoding: klingon-8", mesRule)
    let found = issues(text)
    assertIssue(found, line: line(of: "klingon", in: text), mentions: ["unknown charset"])
    XCTAssertEqual(
      found.count, 1,
      "the source exists; only its encoding is wrong:\n\(found.map(\.description).joined(separator: "\n"))"
    )
  }

  // MARK: A valid file

  func testValidConfigurationResolvesRelativePathsAgainstTheFilesDirectory() throws {
    let text = config(
      #"""
      namespace: plant-1
      ids:
        secret: test-secret-123
      data_dir: state
      rejected:
        path: ../shared/rejected.jsonl
      orders:
        final_statuses: [DONE]
        horizon: 48h
        final_grace: 90s
        alias_ttl: 500ms
        max_pending_aliases: 10
      patterns:
        JOB_ID: 'J-\d+'
      sources:
        - name: mes
          service: MES
          paths: [logs/mes.log, /var/log/abs/mes.log, ../other/./mes.log]
          encoding: windows-1251
          timezone: Europe/Moscow
          multiline:
            start: '^\d{2}\.\d{2}\.\d{4}'
          max_line_bytes: 4096
      rules:
        - name: mes-status
          source: mes
          pattern: '^(?<ts>\S+ \S+) job %{JOB_ID:job}: status (?<status>\w+)'
          timestamp:
            format: 'dd.MM.yyyy HH:mm:ss'
          event:
            alias: {kind: mes_job, key: '${job}'}
            kind: status_change
            status: '${status}'
      exporter:
        file: out/traces.jsonl
      """#)
    let c = try parse(text)
    XCTAssertEqual(c.file, file)
    XCTAssertEqual(c.namespace, "plant-1")
    XCTAssertEqual(c.secret, Array("test-secret-123".utf8))
    XCTAssertEqual(c.dataDirectory, "/tmp/x/state")
    XCTAssertEqual(c.storePath, "/tmp/x/state/state.sqlite")
    XCTAssertEqual(c.rejectedPath, "/tmp/shared/rejected.jsonl")
    XCTAssertEqual(c.sources.map(\.name), ["mes"])
    XCTAssertEqual(
      c.sources[0].paths, ["/tmp/x/logs/mes.log", "/var/log/abs/mes.log", "/tmp/other/mes.log"])
    XCTAssertEqual(c.sources[0].service, "MES")
    XCTAssertEqual(c.sources[0].decoder.charset, "windows-1251")
    XCTAssertEqual(c.sources[0].zone.identifier, "Europe/Moscow")
    XCTAssertEqual(c.sources[0].multilineStart?.pattern, #"^\d{2}\.\d{2}\.\d{4}"#)
    XCTAssertEqual(c.sources[0].maxLineBytes, 4096)
    XCTAssertEqual(c.rules.map(\.name), ["mes-status"])
    XCTAssertEqual(c.rules(for: "mes").indices, [0])
    XCTAssertEqual(c.rules(for: "crm").indices, [])
    XCTAssertEqual(c.exporter.target, .file("/tmp/x/out/traces.jsonl"))
    XCTAssertEqual(c.orders.finalStatuses, ["DONE"])
    XCTAssertEqual(c.orders.horizon, 48 * 3600 * 1_000_000_000)
    XCTAssertEqual(c.orders.finalGrace, 90 * 1_000_000_000)
    XCTAssertEqual(c.orders.aliasTTL, 500_000_000)
    XCTAssertEqual(c.orders.maxPendingAliases, 10)
  }

  func testDefaultsApplyWhenKeysAreLeftOut() throws {
    let c = try parse(config(header, mesSource, mesRule))
    XCTAssertEqual(c.dataDirectory, "/tmp/x/.tracebridge")
    XCTAssertEqual(c.storePath, "/tmp/x/.tracebridge/state.sqlite")
    XCTAssertEqual(c.rejectedPath, "/tmp/x/.tracebridge/rejected.jsonl")
    XCTAssertEqual(c.exporter.target, .file("/tmp/x/.tracebridge/traces.otlp.jsonl"))
    XCTAssertFalse(c.exporter.gzip)
    XCTAssertEqual(c.exporter.maxBatchSpans, 2048)
    XCTAssertEqual(c.orders.finalStatuses, ["DELIVERED", "CANCELLED"])
    XCTAssertEqual(c.orders.horizon, 72 * 3600 * 1_000_000_000)
    XCTAssertEqual(c.sources[0].zone.identifier, "UTC")
    XCTAssertTrue(c.sources[0].decoder.isUTF8)
    XCTAssertNil(c.sources[0].multilineStart)
    XCTAssertEqual(c.sources[0].maxLineBytes, 65536)
    XCTAssertEqual(c.namespace, "test")
    XCTAssertEqual(
      try parse(config("ids: {secret: test-secret-123}", mesSource, mesRule)).namespace, "default")
  }

  func testHTTPExporterSettingsAreRead() throws {
    let text = config(
      header, mesSource, mesRule,
      #"""
      exporter:
        endpoint: https://collector.example:4318/v1/traces
        compression: gzip
        headers:
          Authorization: Bearer abc
        timeout: 2500ms
        max_batch_spans: 512
        retry:
          initial_interval: 2s
          max_interval: 1m
          max_elapsed: 1h
      """#)
    let e = try parse(text).exporter
    XCTAssertEqual(e.target, .http("https://collector.example:4318/v1/traces"))
    XCTAssertTrue(e.gzip)
    XCTAssertEqual(e.headers.map(\.0), ["Authorization"])
    XCTAssertEqual(e.headers.map(\.1), ["Bearer abc"])
    XCTAssertEqual(e.timeout, 2.5)
    XCTAssertEqual(e.maxBatchSpans, 512)
    XCTAssertEqual(e.retry.initialInterval, 2)
    XCTAssertEqual(e.retry.maxInterval, 60)
    XCTAssertEqual(e.retry.maxElapsed, 3600)
  }

  // MARK: The bundled example

  private var packageRoot: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
  }

  func testBundledExampleConfigurationIsValid() throws {
    let path = packageRoot.appendingPathComponent("examples/tracebridge.yaml").path
    let c: Configuration
    do {
      c = try ConfigurationLoader.load(file: path, environment: [:])
    } catch {
      return XCTFail("examples/tracebridge.yaml is invalid:\n\(error.description)")
    }
    let examples = packageRoot.appendingPathComponent("examples").standardizedFileURL.path
    XCTAssertEqual(c.namespace, "demo")
    XCTAssertEqual(c.sources.map(\.name), ["shop", "crm", "mes", "configurator"])
    XCTAssertEqual(
      c.sources.map { $0.paths },
      [
        ["\(examples)/samples/shop/shop.log"], ["\(examples)/samples/crm/crm.log"],
        ["\(examples)/samples/mes/mes.log"], ["\(examples)/samples/configurator/configurator.log"],
      ])
    XCTAssertEqual(c.source(named: "mes")?.decoder.charset, "windows-1251")
    XCTAssertNotNil(c.source(named: "mes")?.multilineStart)
    XCTAssertEqual(
      c.rules.map(\.name),
      [
        "shop-order-created", "shop-order-status", "shop-order-delivered", "crm-payment-json",
        "crm-invoice-issued", "crm-payment-status", "crm-order-confirmed", "mes-job-created",
        "mes-job-status", "mes-step-start", "mes-step-end", "mes-handed-to-courier",
        "mes-production-error", "config-file-saved", "config-file-approved",
      ])
    XCTAssertEqual(c.dataDirectory, "\(examples)/.tracebridge")
    XCTAssertEqual(c.exporter.target, .file("\(examples)/.tracebridge/traces.otlp.jsonl"))
    for source in c.sources {
      XCTAssertFalse(c.rules(for: source.name).rules.isEmpty, source.name)
    }
  }

  func testBundledExampleRulesParseTheLinesTheyDocument() throws {
    let c = try ConfigurationLoader.load(
      file: packageRoot.appendingPathComponent("examples/tracebridge.yaml").path, environment: [:])
    func evaluate(_ sourceName: String, _ line: String) throws -> OrderEvent? {
      let source = try XCTUnwrap(c.source(named: sourceName))
      let (rules, indices) = c.rules(for: sourceName)
      let evaluator = RuleEvaluator(source: source, rules: rules, ruleIndices: indices)
      var text = line
      let outcome = text.withUTF8 {
        evaluator.evaluate($0, sourceKey: SourceKey(source: sourceName, stream: 1, position: 0))
      }
      guard case .matched(_, let event) = outcome else {
        XCTFail("\(sourceName): \(line) → \(outcome)")
        return nil
      }
      return event
    }
    let created = try evaluate(
      "shop",
      "2026-03-28T09:43:44.854+01:00 INFO  [http-nio-8080-exec-5] c.acme.shop.OrderService - Order 5533012 created by user u1031 channel=web total=2496.32"
    )
    XCTAssertEqual(created?.key, .order("5533012"))
    XCTAssertEqual(created?.status, "CREATED")
    XCTAssertEqual(created?.userID, "u1031")

    let invoice = try evaluate(
      "crm",
      #"ts=2026-03-29T01:03:44.594Z level=info msg="invoice issued" order_id=9877560 invoice=INV-64839 amount=2168.89"#
    )
    XCTAssertEqual(invoice?.rule, "crm-invoice-issued")
    XCTAssertTrue(invoice?.attributes.contains(Attribute("invoice.number", "64839")) == true)

    let link = try evaluate(
      "mes", "28.03.2026 13:37:27.599 [INFO ] Задание J-00747 создано для заказа 6724039")
    XCTAssertEqual(link?.kind, .fileLink)
    XCTAssertEqual(
      link?.link, AliasLink(alias: AliasKey(kind: "mes_job", key: "J-00747"), orderID: "6724039"))
    // Moscow local time, UTC+3.
    XCTAssertEqual(link?.timeUnixNano, 1_774_694_247_599_000_000)

    let approved = try evaluate("configurator", "2026-03-28 10:35:42Z file f-7160 approved")
    XCTAssertEqual(approved?.key, .alias(AliasKey(kind: "config_file", key: "f-7160")))
    XCTAssertEqual(approved?.zoneRule, "UTC")
  }
}
