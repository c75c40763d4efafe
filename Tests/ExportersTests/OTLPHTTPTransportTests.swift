import Exporters
import Foundation
import TraceBridgeCore
import XCTest

/// Sends real OTLP/HTTP requests to `tests/e2e/otlp_receiver.py`, which decodes them with the
/// official protobuf definitions and can answer with failure statuses first.
final class OTLPHTTPTransportTests: XCTestCase {
  private static let repository = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  /// A running receiver, stopped (SIGTERM to its own process) at the end of the test.
  private final class Receiver {
    let process = Process()
    let directory: URL
    let port: Int
    var out: URL { directory.appendingPathComponent("spans.jsonl") }
    var requestLog: URL { directory.appendingPathComponent("spans.jsonl.requests.jsonl") }

    init(arguments: [String]) throws {
      directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "otlp-\(UUID().uuidString)")
      try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
      let ready = directory.appendingPathComponent("ready")
      process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      process.arguments =
        [
          "python3",
          OTLPHTTPTransportTests.repository.appendingPathComponent("tests/e2e/otlp_receiver.py")
            .path,
          "--port", "0", "--out", directory.appendingPathComponent("spans.jsonl").path,
          "--ready-file", ready.path,
        ] + arguments
      process.standardError = FileHandle.nullDevice
      try process.run()
      let deadline = Date().addingTimeInterval(20)
      var port: Int?
      while port == nil && Date() < deadline && process.isRunning {
        port = (try? String(contentsOf: ready, encoding: .utf8)).flatMap {
          Int($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if port == nil { Thread.sleep(forTimeInterval: 0.05) }
      }
      guard let port else {
        if process.isRunning { process.terminate() }
        throw XCTSkip(
          "the OTLP test receiver did not start (python3 with opentelemetry-proto needed)")
      }
      self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)/v1/traces" }

    func stop() {
      if process.isRunning {
        process.terminate()
        process.waitUntilExit()
      }
      try? FileManager.default.removeItem(at: directory)
    }

    func lines(_ file: URL) throws -> [[String: Any]] {
      try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
      }
    }

    func statuses() throws -> [Int] { try lines(requestLog).compactMap { $0["status"] as? Int } }
  }

  private func request(_ names: [String]) -> EncodedRequest {
    let spans = names.enumerated().map { i, name in
      SpanRecord(
        traceID: TraceID(high: 0x99b7_3e16_0bf8_e396, low: 0x404e_6f5e_ed6e_0a51),
        spanID: SpanID(UInt64(i + 1)),
        parentSpanID: nil, name: name, kind: .internal, startUnixNano: 1_774_742_000_000_000_000,
        endUnixNano: 1_774_742_001_000_000_000, attributes: [Attribute("order.id", "123")],
        service: "MES")
    }
    return EncodedRequest(
      bytes: SpanBatcher.encodeRequest(spans, format: .protobuf), spanCount: spans.count)
  }

  private func options(gzip: Bool = false) -> OTLPHTTPTransport.Options {
    var o = OTLPHTTPTransport.Options()
    o.gzip = gzip
    o.timeout = 5
    o.retry = RetryPolicy(initialInterval: 0.01, maxInterval: 0.05, maxElapsed: 5)
    return o
  }

  func testDeliveredSpansDecodeWithTheOfficialDefinitions() throws {
    let receiver = try Receiver(arguments: [])
    defer { receiver.stop() }
    let transport = try OTLPHTTPTransport(url: receiver.url, options: options())
    transport.send(request(["PAID → IN_PRODUCTION", "заказ"]))
    let stats = transport.finish()
    XCTAssertEqual(stats.exportedSpans, 2)
    XCTAssertEqual(stats.failedSpans, 0)
    let spans = try receiver.lines(receiver.out)
    XCTAssertEqual(spans.map { $0["name"] as? String }, ["PAID → IN_PRODUCTION", "заказ"])
    XCTAssertEqual(spans.first?["trace_id"] as? String, "99b73e160bf8e396404e6f5eed6e0a51")
    XCTAssertEqual(spans.first?["service"] as? String, "MES")
  }

  func testRetryableStatusWithRetryAfterIsRetriedUntilDelivered() throws {
    let receiver = try Receiver(arguments: [
      "--fail-first", "2", "--fail-status", "503", "--retry-after", "0",
    ])
    defer { receiver.stop() }
    let transport = try OTLPHTTPTransport(url: receiver.url, options: options())
    transport.send(request(["a"]))
    let stats = transport.finish()
    XCTAssertEqual(try receiver.statuses(), [503, 503, 200])
    XCTAssertEqual(stats.retries, 2)
    XCTAssertEqual(stats.exportedSpans, 1)
    XCTAssertEqual(stats.failedRequests, 0)
  }

  func testTooManyRequestsIsRetried() throws {
    let receiver = try Receiver(arguments: ["--fail-first", "1", "--fail-status", "429"])
    defer { receiver.stop() }
    let transport = try OTLPHTTPTransport(url: receiver.url, options: options())
    transport.send(request(["a"]))
    let stats = transport.finish()
    XCTAssertEqual(try receiver.statuses(), [429, 200])
    XCTAssertEqual(stats.exportedSpans, 1)
  }

  func testBadRequestIsNotRetriedAndCountedAsFailed() throws {
    let receiver = try Receiver(arguments: ["--always-status", "400"])
    defer { receiver.stop() }
    let transport = try OTLPHTTPTransport(url: receiver.url, options: options())
    transport.send(request(["a", "b"]))
    let stats = transport.finish()
    XCTAssertEqual(try receiver.statuses(), [400])
    XCTAssertEqual(stats.retries, 0)
    XCTAssertEqual(stats.failedSpans, 2)
    XCTAssertEqual(stats.failedRequests, 1)
    XCTAssertTrue(stats.failures.first?.contains("HTTP 400") ?? false, "\(stats.failures)")
  }

  func testGzippedRequestIsAcceptedByTheReceiver() throws {
    let receiver = try Receiver(arguments: [])
    defer { receiver.stop() }
    let transport = try OTLPHTTPTransport(url: receiver.url, options: options(gzip: true))
    transport.send(request(["a"]))
    let stats = transport.finish()
    XCTAssertEqual(stats.exportedSpans, 1)
    let log = try receiver.lines(receiver.requestLog)
    XCTAssertEqual(log.first?["gzip"] as? Bool, true)
    XCTAssertEqual(log.first?["status"] as? Int, 200)
  }

  func testRequestsAreDeliveredInTheOrderSent() throws {
    let receiver = try Receiver(arguments: [])
    defer { receiver.stop() }
    let transport = try OTLPHTTPTransport(url: receiver.url, options: options())
    for i in 0..<6 { transport.send(request(["request \(i)"])) }
    let stats = transport.finish()
    XCTAssertEqual(stats.requests, 6)
    XCTAssertEqual(
      try receiver.lines(receiver.out).map { $0["name"] as? String },
      (0..<6).map { "request \($0)" })
  }

  func testURLWithoutHTTPSchemeIsRefused() {
    XCTAssertThrowsError(try OTLPHTTPTransport(url: "localhost:4318/v1/traces"))
    XCTAssertThrowsError(try OTLPHTTPTransport(url: "ftp://collector/v1/traces"))
  }
}
