import Foundation
import TraceBridgeCore

#if canImport(Glibc)
  import Glibc
#endif

/// Writes OTLP JSON, one `ExportTraceServiceRequest` a line — the Collector file exporter's
/// format, which `otelcol`'s `otlpjsonfile` receiver and our tests read back. The file is
/// replaced at open (appended to with `append`, live mode); writes are buffered and the file is
/// fsynced at `finish` and after every ``deliver(_:stop:)``.
public final class FileTransport: RequestTransport {
  public let format = ExportFormat.json
  public let path: String
  public var destination: String { "file:\(path)" }
  private let fd: Int32
  private var buffer: [UInt8] = []
  private var stats = ExportStatistics()
  private var writeError: String?

  public init(path: String, append: Bool = false) throws(TransportError) {
    self.path = path
    let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
    guard fd >= 0 else { throw .cannotOpen(path, String(cString: strerror(errno))) }
    buffer.reserveCapacity(1 << 20)
  }

  deinit { close(fd) }

  public func send(_ request: EncodedRequest) {
    stats.requests += 1
    if let writeError {
      stats.recordFailure(writeError, spans: request.spanCount)
      return
    }
    buffer.append(contentsOf: request.bytes)
    buffer.append(0x0A)
    stats.exportedSpans += request.spanCount
    if buffer.count >= 1 << 20 { drain() }
  }

  public func finish() -> ExportStatistics {
    drain()
    if writeError == nil && fsync(fd) != 0 {
      writeError = "\(path): fsync: \(String(cString: strerror(errno)))"
    }
    if let writeError, stats.failures.isEmpty { stats.failures.append(writeError) }
    return stats
  }

  /// Retries never happen here; the rest is counted by the writing thread only.
  public var currentStatistics: ExportStatistics { ExportStatistics() }

  /// Writes one request and syncs it to disk before returning (the spool's sender).
  public func deliver(_ request: EncodedRequest, stop: () -> Bool) -> DeliveryOutcome {
    send(request)
    drain()
    if let writeError { return .failed(writeError) }
    if fsync(fd) != 0 { return .failed("\(path): fsync: \(String(cString: strerror(errno)))") }
    return .delivered
  }

  private func drain() {
    var offset = 0
    while offset < buffer.count && writeError == nil {
      let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
      if n < 0 {
        if errno == EINTR { continue }
        writeError = "\(path): write: \(String(cString: strerror(errno)))"
        break
      }
      offset += n
    }
    buffer.removeAll(keepingCapacity: true)
  }
}

public enum TransportError: Error, CustomStringConvertible {
  case cannotOpen(String, String)
  case invalidURL(String)
  public var description: String {
    switch self {
    case .cannotOpen(let path, let reason): return "cannot open \(path) for writing: \(reason)"
    case .invalidURL(let url): return "'\(url)' is not a valid OTLP/HTTP URL"
    }
  }
}
