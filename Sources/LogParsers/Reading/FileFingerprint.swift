import TraceBridgeCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The identity of a log file's content: a hash of its first line (at most 1 KiB of it, without
/// the newline and a trailing CR). The same for a file, its renamed copy and its gzipped copy, so
/// a rotated file is recognised wherever it reappears — the key of file checkpoints and part of
/// every log event's stable source key.
public enum FileFingerprint {
  /// The number of head bytes that identify a file whose first line is longer.
  public static let headBytes = 1024

  /// The fingerprint of a file whose first line (or first record, cut) is `firstLine`.
  public static func hash(firstLine: UnsafeBufferPointer<UInt8>) -> UInt64 {
    var h = SipHasher(k0: 0x7472_6163_6562_7269, k1: 0x6467_6566_696c_6531)
    h.append(Array(firstLine.prefix(headBytes)))
    return h.finish()
  }

  /// Reads the head of `path` (decompressed when gzipped) and returns its fingerprint, or nil
  /// while the file's first line is incomplete and shorter than ``headBytes`` (a file just
  /// created: wait until it can be told apart from others). `maxLineBytes` is the source's
  /// limit: a first line cut there is hashed as the reader cuts it.
  public static func compute(path: String, maxLineBytes: Int = 65536) throws(LogFileError)
    -> UInt64?
  {
    let reader = try LogFileReader(path: path, chunkSize: 64 << 10)
    defer { reader.close() }
    var head: [UInt8] = []
    while true {
      if let nl = head.firstIndex(of: 0x0A) {
        return hashLine(head, end: nl, maxLineBytes: maxLineBytes)
      }
      if head.count > headBytes {
        return hashLine(head, end: head.count, maxLineBytes: maxLineBytes)
      }
      if try reader.read(appendingTo: &head) == 0 { break }
    }
    if head.count > headBytes || (head.count > maxLineBytes && !head.isEmpty) {
      return hashLine(head, end: head.count, maxLineBytes: maxLineBytes)
    }
    return nil
  }

  /// The fingerprint of the plain file open as `descriptor`, read with `pread` (the reading
  /// position is not moved); nil while its first line is incomplete and shorter than
  /// ``headBytes``. Live mode compares it with the fingerprint the file was opened with: a
  /// difference means the file was truncated and written anew, even when it has already grown
  /// past the point where reading stood.
  public static func compute(descriptor: Int32, maxLineBytes: Int = 65536) -> UInt64? {
    var head = [UInt8](repeating: 0, count: headBytes + 1)
    let n = head.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, headBytes + 1, 0) }
    guard n > 0 else { return nil }
    head.removeLast(head.count - n)
    if let nl = head.firstIndex(of: 0x0A) {
      return hashLine(head, end: nl, maxLineBytes: maxLineBytes)
    }
    if n > headBytes || n > maxLineBytes {
      return hashLine(head, end: n, maxLineBytes: maxLineBytes)
    }
    return nil
  }

  private static func hashLine(_ head: [UInt8], end: Int, maxLineBytes: Int) -> UInt64 {
    var e = end
    if e > 0 && head[e - 1] == 0x0D { e -= 1 }
    e = min(e, maxLineBytes)
    return head.withUnsafeBufferPointer {
      hash(firstLine: UnsafeBufferPointer(rebasing: $0[0..<e]))
    }
  }
}
