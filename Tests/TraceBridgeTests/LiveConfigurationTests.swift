import Foundation
import TraceBridge
import XCTest

/// The `live:` and `spool:` keys of docs/configuration.md: defaults, values, and every error
/// with its line and what to change.
final class LiveConfigurationTests: XCTestCase {
  private let file = "/tmp/x/tracebridge.yaml"
  private let base = #"""
    ids:
      secret: live-test-secret
    sources:
      - name: app
        service: App
        paths: [app.log]
    rules:
      - name: r
        source: app
        pattern: '^(?<ts>\S+) (?<order>\d+) (?<status>\w+)'
        event: {order_id: '${order}', kind: status_change, status: '${status}'}
    """#

  private func parse(_ extra: String) throws -> Configuration {
    try ConfigurationLoader.parse(base + "\n" + extra + "\n", file: file)
  }

  private func issues(_ extra: String) -> [String] {
    do {
      _ = try parse(extra)
      XCTFail("expected an error for:\n\(extra)")
      return []
    } catch let error as ConfigurationError {
      return error.issues.map(\.description)
    } catch {
      XCTFail("\(error)")
      return []
    }
  }

  func testDefaultsWhenLiveIsAbsent() throws {
    let c = try parse("")
    XCTAssertEqual(c.live.listen, "127.0.0.1:9464")
    XCTAssertEqual(c.live.reorderWindow, 2)
    XCTAssertEqual(c.live.commitInterval, 0.2, accuracy: 1e-9)
    XCTAssertEqual(c.live.spoolMaxBytes, 1 << 30)
    XCTAssertFalse(c.live.startAtEnd)
  }

  func testEveryLiveKeyIsRead() throws {
    let c = try parse(
      """
      live:
        listen: 0.0.0.0:9999
        poll_interval: 50ms
        reorder_window: 0s
        multiline_flush: 3s
        commit_interval: 1s
        rotated_quiet_period: 30s
        start_at: end
        cpu_scheduling: normal
      spool:
        max_bytes: 512MiB
      """)
    XCTAssertEqual(c.live.listen, "0.0.0.0:9999")
    XCTAssertEqual(c.live.pollInterval, 0.05, accuracy: 1e-9)
    XCTAssertEqual(c.live.reorderWindow, 0)
    XCTAssertEqual(c.live.multilineFlush, 3)
    XCTAssertEqual(c.live.commitInterval, 1)
    XCTAssertEqual(c.live.rotatedQuietPeriod, 30)
    XCTAssertTrue(c.live.startAtEnd)
    XCTAssertEqual(c.live.cpuScheduling, .normal)
    XCTAssertEqual(c.live.spoolMaxBytes, 512 << 20)
  }

  func testCPUSchedulingIsBatchUnlessSaidAndNamesBadValues() throws {
    XCTAssertEqual(try parse("live:\n  start_at: end").live.cpuScheduling, .batch)
    let found = issues("live:\n  cpu_scheduling: realtime")
    XCTAssertEqual(found.count, 1, "\(found)")
    XCTAssertTrue(found[0].hasPrefix("\(file):13:"), found[0])
    XCTAssertTrue(found[0].contains("'realtime' is neither batch nor normal"), found[0])
  }

  func testBadListenNamesLineAndForm() {
    let found = issues("live:\n  listen: localhost")
    XCTAssertEqual(found.count, 1)
    XCTAssertTrue(found[0].hasPrefix("\(file):13:"), found[0])
    XCTAssertTrue(found[0].contains("HOST:PORT"), found[0])
  }

  func testBadDurationsAndStartAtAreReportedTogether() {
    let found = issues("live:\n  poll_interval: soon\n  commit_interval: 0s\n  start_at: middle")
    XCTAssertEqual(found.count, 3, "\(found)")
    XCTAssertTrue(found.contains { $0.contains(":13:") && $0.contains("live.poll_interval") })
    XCTAssertTrue(
      found.contains {
        $0.contains(":14:") && $0.contains("live.commit_interval must be longer than 0")
      })
    XCTAssertTrue(
      found.contains { $0.contains(":15:") && $0.contains("neither beginning nor end") })
  }

  func testUnknownLiveKeyIsRejected() {
    let found = issues("live:\n  pol_interval: 1s")
    XCTAssertEqual(found.count, 1)
    XCTAssertTrue(found[0].contains("pol_interval"), found[0])
  }

  func testBadSpoolSizeSaysHowToWriteIt() {
    let found = issues("spool:\n  max_bytes: lots")
    XCTAssertEqual(found.count, 1)
    XCTAssertTrue(found[0].contains(":13:") && found[0].contains("512MiB"), found[0])
  }

  private let busSource = #"""
    sources:
      - name: bus
        service: Shop
        amqp: {queue: orders.events, bind: [{exchange: orders, routing_key: 'order.#'}], prefetch: 50}
    rules:
      - name: r
        source: bus
        json: {order: /body/orderId, ts: /properties/timestamp}
        timestamp: {field: ts, format: epoch_seconds}
        event: {order_id: '${order}'}
    """#

  func testQueueSourceAndConnectionAreRead() throws {
    let c = try ConfigurationLoader.parse(
      "ids: {secret: live-test-secret}\n" + busSource
        + "\namqp:\n  url: amqp://rabbit:5672/%2F\n  user_env: RU\n  password_env: RP\n",
      file: file, environment: ["RU": "bridge", "RP": "pw"])
    let q = try XCTUnwrap(c.amqpSources["bus"])
    XCTAssertEqual(q.queue, "orders.events")
    XCTAssertEqual(q.prefetch, 50)
    XCTAssertEqual(q.bindings.first?.exchange, "orders")
    XCTAssertEqual(q.deadLetterQueue, "orders.events.dead")
    XCTAssertEqual(c.amqp?.user, "bridge")
    XCTAssertEqual(c.amqp?.password, "pw")
    XCTAssertEqual(c.source(named: "bus")?.paths, [])
  }

  func testQueueSourceWithoutAMQPConnectionOrWithUnsetCredentialsIsReported() {
    var found: [String] = []
    do {
      _ = try ConfigurationLoader.parse(
        "ids: {secret: live-test-secret}\n" + busSource + "\n", file: file)
    } catch { found = error.issues.map(\.description) }
    XCTAssertTrue(
      found.contains { $0.contains("add amqp: {url: amqp://host:5672/%2F}") }, "\(found)")
    found = []
    do {
      _ = try ConfigurationLoader.parse(
        "ids: {secret: live-test-secret}\n" + busSource
          + "\namqp:\n  url: amqp://r/%2F\n  password_env: NOPE\n",
        file: file, environment: [:])
    } catch { found = error.issues.map(\.description) }
    XCTAssertEqual(found.count, 1, "\(found)")
    XCTAssertTrue(found[0].contains(":14:") && found[0].contains("NOPE is not set"), "\(found)")
  }

  func testParseListenAcceptsIPv6() {
    XCTAssertEqual(ConfigurationLoader.parseListen("[::1]:9464")?.host, "::1")
    XCTAssertEqual(ConfigurationLoader.parseListen("[::1]:9464")?.port, 9464)
    XCTAssertNil(ConfigurationLoader.parseListen("host:99999"))
  }
}
