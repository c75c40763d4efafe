import TraceBridgeCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One record (a line, or a multiline record) of a log file, decoded to UTF-8.
/// `text` is valid only during the callback that receives it.
public struct LogRecord {
  public var text: UnsafeBufferPointer<UInt8>
  /// Byte offset of the record's first byte in the (decompressed) file.
  public var offset: UInt64
  /// 1-based number of the record's first line.
  public var line: Int
  /// The record was longer than the source's `max_line_bytes` and was cut.
  public var wasCut: Bool
}

/// Counts a reader keeps while it reads.
public struct ReadStatistics: Sendable, Equatable {
  public var bytes: Int64 = 0
  public var lines: Int = 0
  public var records: Int = 0
  public var cutRecords: Int = 0
  public var invalidSequences: Int = 0
  public init() {}
}

/// Splits a log file into records: lines, joined into multiline records where the source has a
/// start pattern, decoded from the source's charset to UTF-8, cut at the source's maximum length.
/// Streams in chunks; memory stays bounded by the chunk size plus the longest record, which is
/// itself bounded by `max_line_bytes` (the rest of an over-long line is skipped, not buffered).
public final class RecordReader {
  public let source: SourceDefinition
  public private(set) var statistics = ReadStatistics()
  /// Identity of the file's content: a hash of its first line (at most 1 KiB of it), the same
  /// for a file and its gzipped copy. Known once the first line has been read; 0 for an empty file.
  public private(set) var fingerprint: UInt64 = 0

  private let file: LogFileReader?
  private let startMatcher: PatternMatcher?
  private var chunk: [UInt8] = []
  private var lineBuffer: [UInt8] = []
  private var record: [UInt8] = []
  private var recordOffset: UInt64 = 0
  private var recordLine = 0
  private var recordCut = false
  private var haveRecord = false
  private var haveFingerprint = false
  /// File offset of `chunk[0]`.
  private var consumedBase: UInt64 = 0
  /// Index in `chunk` of the first byte not yet split into a line.
  private var start = 0
  /// Bytes of `chunk` after `start` already known to hold no newline.
  private var scanFrom = 0
  /// Inside an over-long line whose head was emitted: the rest up to its newline is dropped.
  private var skipping = false
  private var skipStart: UInt64 = 0

  /// A reader of `file` from its beginning (`readAll`).
  public init(file: LogFileReader, source: SourceDefinition) {
    self.file = file
    self.source = source
    startMatcher = source.multilineStart.map(PatternMatcher.init)
    chunk.reserveCapacity(1 << 20)
  }

  /// A reader fed by its caller (tailing): bytes passed to ``feed(_:)`` continue the file at
  /// `offset`. `fingerprint` is the file's identity, computed from its head by the caller
  /// (``FileFingerprint``), since the reader may never see the first line.
  public init(source: SourceDefinition, offset: UInt64, fingerprint: UInt64, line: Int = 0) {
    self.file = nil
    self.source = source
    startMatcher = source.multilineStart.map(PatternMatcher.init)
    consumedBase = offset
    self.fingerprint = fingerprint
    haveFingerprint = true
    statistics.lines = line
  }

  /// Where reading may resume without losing or cutting a record: the first byte of the
  /// record being assembled (a multiline record waiting for its next line, a line without its
  /// newline yet, an over-long line being skipped).
  public var resumeOffset: UInt64 {
    var offset = consumedBase + UInt64(start)
    if skipping { offset = skipStart }
    if haveRecord { offset = min(offset, recordOffset) }
    return offset
  }

  /// Offset just past the last byte fed.
  public var endOffset: UInt64 { consumedBase + UInt64(chunk.count) }

  /// A multiline record is waiting for a line that may still come.
  public var hasPendingRecord: Bool { haveRecord }

  /// Reads the file to its end, calling `body` for every record in file order.
  public func readAll(_ body: (LogRecord) throws -> Void) throws {
    guard let file else { return }
    var eof = false
    while !eof {
      compact()
      let before = chunk.count
      let n = try file.read(appendingTo: &chunk)
      if n == 0 { eof = true }
      statistics.bytes += Int64(chunk.count - before)
      try split(atEnd: eof, body)
    }
    try flush(body)
  }

  /// Appends bytes that continue the file and emits every record they complete. A line
  /// without its newline waits for the next call; a multiline record waits for the next
  /// record's first line or ``flushPending(_:)``.
  public func feed(_ bytes: UnsafeRawBufferPointer, _ body: (LogRecord) throws -> Void) throws {
    compact()
    chunk.append(contentsOf: bytes.bindMemory(to: UInt8.self))
    statistics.bytes += Int64(bytes.count)
    try split(atEnd: false, body)
  }

  /// Emits the record being assembled: a multiline record after its quiet timeout, or at
  /// rotation and shutdown. With `includePartialLine`, a last line without its newline too
  /// (the file was rotated away and will not grow).
  public func flushPending(includePartialLine: Bool = false, _ body: (LogRecord) throws -> Void)
    throws
  {
    if includePartialLine { try split(atEnd: true, body) }
    try flush(body)
  }

  private func compact() {
    guard start > 0 else { return }
    chunk.removeSubrange(0..<start)
    consumedBase += UInt64(start)
    start = 0
  }

  /// Splits `chunk` from `start` into lines; at the end of input a last line without newline too.
  private func split(atEnd: Bool, _ body: (LogRecord) throws -> Void) throws {
    let maxLine = source.maxLineBytes
    while true {
      let remaining = chunk.count - start
      if remaining == 0 { break }
      let newline: Int? = chunk.withUnsafeBufferPointer { buf -> Int? in
        let from = start + scanFrom
        guard let p = memchr(buf.baseAddress! + from, 0x0A, buf.count - from) else { return nil }
        return buf.baseAddress!.distance(to: p.assumingMemoryBound(to: UInt8.self))
      }
      if let nl = newline {
        if skipping {
          skipping = false
        } else {
          try line(from: start, to: nl, offset: consumedBase + UInt64(start), cut: false, body)
        }
        start = nl + 1
        scanFrom = 0
        continue
      }
      if atEnd {
        if !skipping {
          try line(
            from: start, to: chunk.count, offset: consumedBase + UInt64(start), cut: false, body)
        }
        skipping = false
        start = chunk.count
        scanFrom = 0
        break
      }
      if !skipping && remaining > maxLine {
        // An over-long line: keep its head, skip the rest up to the next newline.
        try line(
          from: start, to: start + maxLine, offset: consumedBase + UInt64(start), cut: true, body)
        skipping = true
        skipStart = consumedBase + UInt64(start)
      }
      if skipping {
        consumedBase += UInt64(chunk.count)
        chunk.removeAll(keepingCapacity: true)
        start = 0
        scanFrom = 0
      } else {
        scanFrom = remaining
      }
      break
    }
  }

  private func line(
    from: Int, to: Int, offset: UInt64, cut: Bool, _ body: (LogRecord) throws -> Void
  ) throws {
    statistics.lines += 1
    var end = to
    if end > from && chunk[end - 1] == 0x0D { end -= 1 }
    var cut = cut
    if end - from > source.maxLineBytes {
      end = from + source.maxLineBytes
      cut = true
    }
    if cut && source.decoder.isUTF8 && end < chunk.count {
      // Do not split a UTF-8 sequence: cut before the character the limit falls into.
      while end > from && (chunk[end] & 0xC0) == 0x80 { end -= 1 }
    }
    lineBuffer.removeAll(keepingCapacity: true)
    chunk.withUnsafeBufferPointer { buf in
      let raw = UnsafeBufferPointer(rebasing: buf[from..<end])
      if !haveFingerprint {
        haveFingerprint = true
        fingerprint = FileFingerprint.hash(firstLine: raw)
      }
      statistics.invalidSequences += source.decoder.decode(raw, into: &lineBuffer)
    }
    if let startMatcher {
      let isStart = lineBuffer.withUnsafeBufferPointer { startMatcher.matches($0) }
      if isStart || !haveRecord {
        try flush(body)
        begin(offset: offset, cut: cut)
      } else {
        // A continuation line (a stack trace): append, within the record's limit.
        if record.count + 1 + lineBuffer.count > source.maxLineBytes {
          let room = source.maxLineBytes - record.count - 1
          if room > 0 {
            record.append(0x0A)
            record.append(contentsOf: lineBuffer.prefix(Self.utf8Boundary(lineBuffer, room)))
          }
          recordCut = true
        } else {
          record.append(0x0A)
          record.append(contentsOf: lineBuffer)
        }
        recordCut = recordCut || cut
      }
    } else {
      begin(offset: offset, cut: cut)
      try flush(body)
    }
  }

  private func begin(offset: UInt64, cut: Bool) {
    record.removeAll(keepingCapacity: true)
    if cut {
      record.append(contentsOf: lineBuffer.prefix(Self.utf8Boundary(lineBuffer, lineBuffer.count)))
    } else {
      record.append(contentsOf: lineBuffer)
    }
    recordOffset = offset
    recordLine = statistics.lines
    recordCut = cut
    haveRecord = true
  }

  private func flush(_ body: (LogRecord) throws -> Void) throws {
    guard haveRecord else { return }
    haveRecord = false
    statistics.records += 1
    if recordCut { statistics.cutRecords += 1 }
    try record.withUnsafeBufferPointer { buf in
      try body(LogRecord(text: buf, offset: recordOffset, line: recordLine, wasCut: recordCut))
    }
  }

  /// The largest length ≤ `limit` that does not split a UTF-8 sequence of `bytes`.
  static func utf8Boundary(_ bytes: [UInt8], _ limit: Int) -> Int {
    var n = min(limit, bytes.count)
    if n == bytes.count { return n }
    while n > 0 && (bytes[n] & 0xC0) == 0x80 { n -= 1 }
    return n
  }
}
