import Foundation
import LogParsers
import TraceBridgeCore

#if canImport(Glibc)
  import Glibc
#endif

/// Keeps aside what could not become an event — lines no rule matched, records with a bad
/// timestamp or no order id, alias-only events whose link never came — one JSON object a line
/// (`source`, `file`, `line`, `offset`, `reason`, `text`), so nothing read is lost and an
/// integrator can write a rule for it and backfill it later. Thread-safe; buffered per call
/// site and appended under a lock.
public final class RejectedWriter: @unchecked Sendable {
  public let path: String
  private let lock = NSLock()
  private let fd: Int32
  private var failed: String?

  public init(path: String) throws {
    self.path = path
    try FileManager.default.createDirectory(
      atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
      withIntermediateDirectories: true)
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw CLIError(
        "cannot open \(path) for the rejected lines: \(String(cString: strerror(errno)))")
    }
  }

  deinit { close(fd) }

  /// Appends one record as a JSON line to `buffer` (the caller's, flushed with `write`).
  public static func append(
    to buffer: inout [UInt8], source: String, file: String, line: Int, offset: UInt64,
    reason: String,
    text: UnsafeBufferPointer<UInt8>
  ) {
    buffer.append(contentsOf: #"{"source":"#.utf8)
    appendString(&buffer, source)
    buffer.append(contentsOf: #","file":"#.utf8)
    appendString(&buffer, file)
    buffer.append(contentsOf: ",\"line\":\(line),\"offset\":\(offset),\"reason\":".utf8)
    appendString(&buffer, reason)
    buffer.append(contentsOf: #","text":"#.utf8)
    appendString(&buffer, text)
    buffer.append(contentsOf: "}\n".utf8)
  }

  /// Writes `buffer` and empties it.
  public func write(_ buffer: inout [UInt8]) {
    guard !buffer.isEmpty else { return }
    lock.lock()
    defer { lock.unlock() }
    var offset = 0
    while offset < buffer.count && failed == nil {
      let n = buffer.withUnsafeBytes {
        Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset)
      }
      if n < 0 {
        if errno == EINTR { continue }
        failed = "\(path): \(String(cString: strerror(errno)))"
        break
      }
      offset += n
    }
    buffer.removeAll(keepingCapacity: true)
  }

  public var error: String? {
    lock.lock()
    defer { lock.unlock() }
    return failed
  }

  static func appendString(_ buffer: inout [UInt8], _ s: String) {
    JSONText.appendString(&buffer, s)
  }

  static func appendString(_ buffer: inout [UInt8], _ text: UnsafeBufferPointer<UInt8>) {
    JSONText.appendString(&buffer, text)
  }

  /// Appends an event the correlator set aside (`reason`), described by its key, kind and
  /// status, step or name.
  static func append(
    to buffer: inout [UInt8], setAside event: OrderEvent, reason: RejectReasonCode
  ) {
    var text = Array(
      "\(event.key) \(event.kind.rawValue) \(event.status ?? event.step ?? event.name)".utf8)
    text.withUnsafeMutableBufferPointer { buf in
      append(
        to: &buffer, source: event.sourceKey.source, file: "", line: 0,
        offset: event.sourceKey.position, reason: "\(reason.rawValue) (rule \(event.rule))",
        text: UnsafeBufferPointer(buf))
    }
  }
}

/// An error with a message for the user.
public struct CLIError: Error, CustomStringConvertible {
  public var description: String
  public var exitCode: Int32
  public init(_ message: String, exitCode: Int32 = 1) {
    description = message
    self.exitCode = exitCode
  }

}
