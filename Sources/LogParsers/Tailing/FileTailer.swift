import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Where a file was left: the key of live mode's checkpoints. Files are known by their
/// ``FileFingerprint``, not by path or inode, so a checkpoint follows the content through
/// renames, copies and compression.
public struct TailCheckpoint: Sendable, Equatable {
  public var fingerprint: UInt64
  public var source: String
  /// Where the file was last seen (informational).
  public var path: String
  /// Reading resumes here (a byte offset in the decompressed content).
  public var offset: UInt64
  /// The number of lines before `offset`, for line numbers in the rejected file.
  public var line: Int
  /// The file was read to its end after it was rotated away: its copies are not read again.
  public var done: Bool
  /// Records at or after `offset` already processed (they left the reorder window before an
  /// earlier record of the same file did); skipped when reading resumes.
  public var processed: [UInt64]

  public init(
    fingerprint: UInt64, source: String, path: String, offset: UInt64, line: Int = 0,
    done: Bool = false,
    processed: [UInt64] = []
  ) {
    self.fingerprint = fingerprint
    self.source = source
    self.path = path
    self.offset = offset
    self.line = line
    self.done = done
    self.processed = processed
  }
}

/// Follows the files of the configured sources the way logrotate leaves them: it polls the
/// globs and the open files every `pollInterval`, reads what was appended, and
/// - picks up new files, and rotated siblings (`x.log.1`, `x.log.2.gz`) written while it was not
///   looking (created and rotated between two polls, or while the bridge was down);
/// - keeps reading a file renamed away (rotation by rename) until it has been quiet for
///   `rotatedQuietPeriod`, then reads its last line even without a newline and closes it;
/// - notices truncation (copytruncate, `truncate -s 0`) by the size falling below what was
///   read; the copy (same fingerprint) is then resumed where reading stopped;
/// - reads a deleted file to its end and closes it; a new file at the same path (inode reuse
///   included) is a new file because its fingerprint differs;
/// - never reads a file whose fingerprint is checkpointed `done`, whatever its name or
///   compression.
///
/// Not thread-safe: one thread polls. Records are handed out in file order per file.
public final class FileTailer {
  public struct Options: Sendable {
    public var pollInterval: Double = 0.2
    /// A multiline record waiting for its next line is emitted after this long without growth.
    public var multilineFlush: Double = 1
    /// A file rotated away or deleted is closed after this long without growth.
    public var rotatedQuietPeriod: Double = 5
    /// At most this many bytes are read from one file per poll (fairness between files).
    public var maxBytesPerPoll = 4 << 20
    /// Files seen for the first time when a source has no checkpoint at all start at their end.
    public var startAtEnd = false
    public init() {}
  }

  /// What the tailer knows of one open file.
  public final class TailedFile {
    public let source: SourceDefinition
    public let fingerprint: UInt64
    public private(set) var path: String
    public let isGzip: Bool
    /// The line count where reading started (the checkpoint's).
    public let startLine: Int
    /// Bytes read from this file by this process.
    public internal(set) var bytesRead: Int64 = 0
    /// The size of the file (compressed size for gzip) at the last poll.
    public internal(set) var size: Int64 = 0
    /// The path is no longer this file (renamed away or deleted).
    public internal(set) var rotated = false
    /// The configured path the file was found at while it was the live file.
    var livePath: String?
    let reader: LogFileReader
    let records: RecordReader
    let device: UInt64
    let inode: UInt64
    var lastGrowth: Double
    var skip: Set<UInt64>
    var atEOF = false

    init(
      source: SourceDefinition, path: String, fingerprint: UInt64, reader: LogFileReader,
      records: RecordReader,
      device: UInt64, inode: UInt64, now: Double, skip: Set<UInt64>, startLine: Int
    ) {
      self.startLine = startLine
      self.source = source
      self.path = path
      self.fingerprint = fingerprint
      self.reader = reader
      self.records = records
      self.device = device
      self.inode = inode
      self.isGzip = reader.isGzip
      self.lastGrowth = now
      self.skip = skip
    }

    /// Where reading would resume after a restart: before any record not yet handed out.
    public var resumeOffset: UInt64 { records.resumeOffset }
    /// Lines read up to the resume point (approximate while a record is pending).
    public var lines: Int { records.statistics.lines }
    /// Uncompressed bytes handed to the reader so far, as an offset.
    public var readOffset: UInt64 { records.endOffset }
    public var statistics: ReadStatistics { records.statistics }
  }

  /// What one poll found, for metrics and logs.
  public struct PollReport: Sendable {
    public var opened: [String] = []
    public var rotated: [String] = []
    public var truncated: [String] = []
    public var closed: [String] = []
    public var errors: [String] = []
    public var bytes = 0
  }

  public let sources: [SourceDefinition]
  public let options: Options
  public private(set) var files: [TailedFile] = []
  /// Checkpoints of files finished by this tailer since the last ``takeFinished()``.
  private var finished: [TailCheckpoint] = []
  private let checkpoint: (UInt64) -> TailCheckpoint?
  /// Per source: files modified before this time (seconds) with an unknown fingerprint are
  /// history the bridge never tailed (left to `backfill`).
  private var watchSince: [String: Double]
  /// Sources tailed for the first time: in the first look at their files, every rotated
  /// sibling is history.
  private var neverTailed: Set<String>
  private var firstPass = true
  /// Files looked at and left alone, by identity and size (not fingerprinted again).
  private var ignored: [FileIdentity: Int64] = [:]

  struct FileIdentity: Hashable {
    var device: UInt64
    var inode: UInt64
  }

  /// - Parameters:
  ///   - checkpoint: the stored checkpoint of a fingerprint, if any.
  ///   - watchSince: per source, when the previous run last committed (seconds since the
  ///     epoch); no entry: the source was never tailed (its rotated files are history, left to
  ///     `backfill`; with `startAtEnd` its live files start at their end).
  public init(
    sources: [SourceDefinition], options: Options, watchSince: [String: Double],
    checkpoint: @escaping (UInt64) -> TailCheckpoint?
  ) {
    self.sources = sources
    self.options = options
    neverTailed = Set(sources.map(\.name)).subtracting(watchSince.keys)
    var since = watchSince
    let now = Date().timeIntervalSince1970
    for name in neverTailed { since[name] = now }
    self.watchSince = since
    self.checkpoint = checkpoint
  }

  /// Checkpoints of files closed since the last call: read to their end after rotation
  /// (`done`), history found at startup (`done`), or truncated (not done: a copy may follow).
  public func takeFinished() -> [TailCheckpoint] {
    defer { finished.removeAll() }
    return finished
  }

  /// Looks for new files, reads what was appended to the open ones and hands every complete
  /// record to `body`, with the file it came from. Records listed in a checkpoint's
  /// `processed` are skipped.
  public func poll(now: Double, _ body: (TailedFile, LogRecord) -> Void) -> PollReport {
    var report = PollReport()
    discover(now: now, &report)
    firstPass = false
    var keep: [TailedFile] = []
    for file in files {
      if service(file, now: now, &report, body) { keep.append(file) }
    }
    files = keep
    return report
  }

  public func closeAll() {
    for f in files { f.reader.close() }
    files.removeAll()
  }

  // MARK: - Discovery

  private func discover(now: Double, _ report: inout PollReport) {
    for source in sources {
      for glob in source.paths {
        let liveNames = Set(Self.globPaths(glob))
        for path in RotatedFileSet.expand(glob: glob) {
          consider(path, source: source, live: liveNames.contains(path), now: now, &report)
        }
      }
    }
  }

  private func consider(
    _ path: String, source: SourceDefinition, live: Bool, now: Double, _ report: inout PollReport
  ) {
    var info = stat()
    guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return }
    let identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    if let open = files.first(where: { $0.device == identity.device && $0.inode == identity.inode })
    {
      if open.path != path { open.rename(to: path) }
      return
    }
    if let size = ignored[identity], size == Int64(info.st_size) { return }
    let fingerprint: UInt64?
    do {
      fingerprint = try FileFingerprint.compute(path: path, maxLineBytes: source.maxLineBytes)
    } catch {
      report.errors.append("\(error)")
      return
    }
    guard let fingerprint else { return }  // first line not complete yet: look again later
    if files.contains(where: { $0.fingerprint == fingerprint }) {
      return  // a copy of a file still open (copytruncate copy, gzipped copy): later
    }
    let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    var start: UInt64 = 0
    var line = 0
    var skip: Set<UInt64> = []
    if let c = checkpoint(fingerprint) {
      if c.done {
        ignored[identity] = Int64(info.st_size)
        return
      }
      // Resume, unless the content is shorter than the checkpoint: a file truncated and
      // rewritten with the same first line starts over.
      let plainSize = UInt64(info.st_size)
      if Self.isGzipFile(path) || c.offset <= plainSize {
        start = c.offset
        line = c.line
        skip = Set(c.processed)
      }
    } else if !live,
      (firstPass && neverTailed.contains(source.name))
        || modified < (watchSince[source.name] ?? now) - 1
    {
      // A rotated file last written before the bridge watched this source: history.
      ignored[identity] = Int64(info.st_size)
      finished.append(
        TailCheckpoint(
          fingerprint: fingerprint, source: source.name, path: path, offset: 0, done: true))
      return
    } else if live, options.startAtEnd, firstPass, neverTailed.contains(source.name) {
      start = UInt64(info.st_size)
    }
    do {
      let reader = try LogFileReader(path: path)
      if start > 0 { try reader.skip(start) }
      let records = RecordReader(
        source: source, offset: start, fingerprint: fingerprint, line: line)
      let file = TailedFile(
        source: source, path: path, fingerprint: fingerprint, reader: reader, records: records,
        device: identity.device, inode: identity.inode, now: now, skip: skip, startLine: line)
      file.rotated = !live
      file.livePath = live ? path : nil
      files.append(file)
      report.opened.append(start > 0 ? "\(path) at byte \(start)" : path)
    } catch {
      report.errors.append("\(error)")
    }
  }

  // MARK: - Reading

  /// Reads, detects truncation and rotation; false when the file is closed.
  private func service(
    _ file: TailedFile, now: Double, _ report: inout PollReport,
    _ body: (TailedFile, LogRecord) -> Void
  ) -> Bool {
    func emit(_ record: LogRecord) {
      if !file.skip.isEmpty, file.skip.remove(record.offset) != nil { return }
      body(file, record)
    }
    var info = stat()
    let haveInfo = file.reader.status(&info)
    if haveInfo {
      file.size = Int64(info.st_size)
      if !file.isGzip
        && (UInt64(info.st_size) < file.readOffset
          || file.reader.headFingerprint(maxLineBytes: file.source.maxLineBytes) != file.fingerprint)
      {
        // Truncated in place. What was read is kept; the copy, if any (copytruncate), is
        // found by its fingerprint and resumed from the checkpoint.
        report.truncated.append(file.path)
        try? file.records.flushPending(includePartialLine: false, emit)
        file.reader.close()
        finished.append(
          TailCheckpoint(
            fingerprint: file.fingerprint, source: file.source.name, path: file.path,
            offset: file.resumeOffset, line: file.lines, done: false))
        return false
      }
      if info.st_nlink == 0 { file.rotated = true }
    }
    if !file.rotated, let livePath = file.livePath {
      var live = stat()
      if stat(livePath, &live) != 0 || UInt64(live.st_ino) != file.inode
        || UInt64(live.st_dev) != file.device
      {
        file.rotated = true
        report.rotated.append(livePath)
      }
    }
    var budget = options.maxBytesPerPoll
    var grew = false
    var chunk: [UInt8] = []
    do {
      while budget > 0 {
        chunk.removeAll(keepingCapacity: true)
        let n = try file.reader.read(appendingTo: &chunk)
        if n == 0 { break }
        grew = true
        budget -= n
        file.bytesRead += Int64(n)
        report.bytes += n
        try chunk.withUnsafeBytes { try file.records.feed($0, emit) }
      }
    } catch {
      report.errors.append("\(error)")
      file.rotated = true
      file.lastGrowth = -.infinity
    }
    if grew {
      file.lastGrowth = now
      return true
    }
    let quiet = now - file.lastGrowth
    if file.rotated && quiet >= options.rotatedQuietPeriod {
      try? file.records.flushPending(includePartialLine: true, emit)
      file.reader.close()
      finished.append(
        TailCheckpoint(
          fingerprint: file.fingerprint, source: file.source.name, path: file.path,
          offset: file.readOffset,
          line: file.lines, done: true))
      report.closed.append(file.path)
      return false
    }
    if file.records.hasPendingRecord && quiet >= options.multilineFlush {
      try? file.records.flushPending(includePartialLine: false, emit)
    }
    return true
  }

  // MARK: - Helpers

  static func globPaths(_ pattern: String) -> [String] {
    var g = glob_t()
    defer { globfree(&g) }
    guard glob(pattern, 0, nil, &g) == 0 else { return [] }
    return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
  }

  static func isGzipFile(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var magic: [UInt8] = [0, 0]
    let n = magic.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 2, 0) }
    return n == 2 && magic[0] == 0x1F && magic[1] == 0x8B
  }
}

extension FileTailer.TailedFile {
  func rename(to path: String) {
    self.path = path
  }
}
