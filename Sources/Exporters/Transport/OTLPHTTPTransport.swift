import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TraceBridgeCore

/// Sends OTLP/HTTP protobuf requests (`POST …/v1/traces`) to a collector or to Jaeger's OTLP
/// receiver, optionally gzipped, retrying as `RetryPolicy` says. Requests are sent in the
/// order given by one sender thread; `send` blocks while `maxQueued` requests wait, so a slow
/// or absent receiver slows the pipeline down instead of filling memory.
public final class OTLPHTTPTransport: RequestTransport, @unchecked Sendable {
  public let format = ExportFormat.protobuf
  public let url: String
  public var destination: String { url }

  public struct Options: Sendable {
    public var gzip = false
    public var headers: [(String, String)] = []
    public var timeout: Double = 10
    public var retry = RetryPolicy()
    public var maxQueued = 4
    public init() {}
  }

  private let options: Options
  private let queue: BlockingQueue<EncodedRequest>
  private let client: HTTPClient
  private let logger: Logger
  private let statsLock = NSLock()
  private var stats = ExportStatistics()
  private var thread: Thread?
  private let done = DispatchSemaphore(value: 0)

  public init(
    url: String, options: Options = Options(), logger: Logger = Logger(label: "tracebridge.otlp")
  ) throws(TransportError) {
    guard let parsed = URL(string: url), let scheme = parsed.scheme,
      ["http", "https"].contains(scheme), parsed.host != nil
    else { throw .invalidURL(url) }
    self.url = url
    self.options = options
    self.logger = logger
    queue = BlockingQueue(capacity: max(1, options.maxQueued))
    client = HTTPClient(eventLoopGroupProvider: .singleton)
    let thread = Thread { [self] in
      ThreadName.set("otlp-http-sender")
      while let request = queue.take() { deliver(request) }
      done.signal()
    }
    thread.name = "otlp-http-sender"
    self.thread = thread
    thread.start()
  }

  public func send(_ request: EncodedRequest) {
    queue.put(request)
  }

  public func finish() -> ExportStatistics {
    queue.close()
    done.wait()
    try? client.syncShutdown()
    statsLock.lock()
    defer { statsLock.unlock() }
    return stats
  }

  public var currentStatistics: ExportStatistics { statistics }

  /// Current counts while sending (for progress lines).
  public var statistics: ExportStatistics {
    statsLock.lock()
    defer { statsLock.unlock() }
    return stats
  }

  private func update(_ body: (inout ExportStatistics) -> Void) {
    statsLock.lock()
    body(&stats)
    statsLock.unlock()
  }

  private enum Attempt: Sendable {
    case delivered
    case retry(String, Double?)
    case fail(String)
  }

  private func deliver(_ request: EncodedRequest) {
    update { $0.requests += 1 }
    let body = options.gzip ? Gzip.compress(request.bytes) : request.bytes
    let started = Date()
    var attempt = 0
    var rng = SystemRandomNumberGenerator()
    while true {
      attempt += 1
      switch post(body) {
      case .delivered:
        update { $0.exportedSpans += request.spanCount }
        return
      case .fail(let reason):
        logger.error(
          "export failed, not retried",
          metadata: ["reason": "\(reason)", "spans": "\(request.spanCount)"])
        update { $0.recordFailure(reason, spans: request.spanCount) }
        return
      case .retry(let reason, let retryAfter):
        let wait = options.retry.delay(attempt: attempt, retryAfter: retryAfter, using: &rng)
        if Date().timeIntervalSince(started) + wait > options.retry.maxElapsed {
          let message =
            "\(reason); gave up after \(attempt) attempts in \(Int(Date().timeIntervalSince(started))) s"
          logger.error("export failed", metadata: ["reason": "\(message)"])
          update { $0.recordFailure(message, spans: request.spanCount) }
          return
        }
        logger.warning(
          "export will be retried",
          metadata: ["reason": "\(reason)", "in_seconds": "\(String(format: "%.2f", wait))"])
        update { $0.retries += 1 }
        Thread.sleep(forTimeInterval: wait)
      }
    }
  }

  /// Delivers one request on the calling thread; retryable failures are retried with the
  /// policy's backoff (`Retry-After` honoured) for as long as `stop` returns false.
  public func deliver(_ request: EncodedRequest, stop: () -> Bool) -> DeliveryOutcome {
    update { $0.requests += 1 }
    let body = options.gzip ? Gzip.compress(request.bytes) : request.bytes
    var attempt = 0
    var rng = SystemRandomNumberGenerator()
    var loggedRetry = false
    while !stop() {
      attempt += 1
      switch post(body) {
      case .delivered:
        update { $0.exportedSpans += request.spanCount }
        if loggedRetry { logger.notice("export recovered", metadata: ["attempts": "\(attempt)"]) }
        return .delivered
      case .fail(let reason):
        logger.error(
          "export refused, not retried",
          metadata: ["reason": "\(reason)", "spans": "\(request.spanCount)"])
        update { $0.recordFailure(reason, spans: request.spanCount) }
        return .failed(reason)
      case .retry(let reason, let retryAfter):
        let wait = min(
          options.retry.delay(attempt: attempt, retryAfter: retryAfter, using: &rng),
          options.retry.maxInterval)
        if !loggedRetry || attempt % 20 == 0 {
          logger.warning(
            "export will be retried; spans wait in the spool",
            metadata: ["reason": "\(reason)", "attempt": "\(attempt)"])
          loggedRetry = true
        }
        update { $0.retries += 1 }
        let until = Date().addingTimeInterval(wait)
        while Date() < until && !stop() { Thread.sleep(forTimeInterval: min(0.1, wait)) }
      }
    }
    return .stopped
  }

  /// One POST, bridged from async to this sender thread.
  private func post(_ body: [UInt8]) -> Attempt {
    final class Box: @unchecked Sendable { var result: Attempt = .fail("no result") }
    let box = Box()
    let semaphore = DispatchSemaphore(value: 0)
    let url = url
    let options = options
    let client = client
    Task {
      box.result = await Self.attempt(client: client, url: url, body: body, options: options)
      semaphore.signal()
    }
    semaphore.wait()
    return box.result
  }

  private static func attempt(client: HTTPClient, url: String, body: [UInt8], options: Options)
    async -> Attempt
  {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/x-protobuf")
    request.headers.add(name: "User-Agent", value: "tracebridge/\(TraceBridgeVersion.current)")
    if options.gzip { request.headers.add(name: "Content-Encoding", value: "gzip") }
    for (k, v) in options.headers { request.headers.add(name: k, value: v) }
    request.body = .bytes(ByteBuffer(bytes: body))
    do {
      let response = try await client.execute(
        request, timeout: .milliseconds(Int64(options.timeout * 1000)))
      let responseBody = try await response.body.collect(upTo: 1 << 20)
      let status = Int(response.status.code)
      if (200..<300).contains(status) { return .delivered }
      let text = String(buffer: responseBody).prefix(300)
      let reason = "HTTP \(status) from \(url)\(text.isEmpty ? "" : ": \(text)")"
      if RetryPolicy.isRetryable(status: status) {
        return .retry(
          reason, RetryPolicy.parseRetryAfter(response.headers.first(name: "Retry-After")))
      }
      return .fail(reason)
    } catch {
      return .retry("cannot reach \(url): \(error)", nil)
    }
  }
}
