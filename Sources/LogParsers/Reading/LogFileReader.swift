import CZlib

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Streams a log file's bytes, decompressing gzip on the fly, in chunks: memory stays bounded by
/// twice the chunk size whatever the file size.
///
/// Gzip is recognised by its magic bytes (`1f 8b`), not by the file name. A file of several gzip
/// members (`cat a.gz b.gz > c.gz`) reads as their concatenation; zero bytes padding the end are
/// ignored. A truncated or corrupt gzip file yields everything decoded before the damage, then
/// the next ``read(appendingTo:)`` throws ``LogFileError/corruptGzip(path:detail:)``.
///
/// A plain file is read with POSIX `read`, so a reader that reached the end sees bytes appended
/// later (tailing). Not thread-safe: one reader belongs to one thread at a time.
public final class LogFileReader {
  public let path: String
  /// The file starts with the gzip magic bytes.
  public private(set) var isGzip: Bool
  /// Bytes read from the file so far (compressed bytes for gzip), for progress reports.
  public private(set) var compressedBytesRead: Int64 = 0

  private var descriptor: Int32
  private let chunkSize: Int
  /// Output of `inflate` (gzip) or of `read` (plain), `chunkSize` bytes.
  private let outputBuffer: UnsafeMutablePointer<UInt8>
  private var gzip: GzipState?
  private var pendingError: LogFileError?
  /// Bytes already taken from a pipe to look for the gzip magic, read again first.
  private var pushback: [UInt8] = []
  /// Content bytes read past the end of a ``skip(_:)``, handed out first.
  private var skipped: [UInt8] = []

  /// Opens `path` for reading: a regular file, or a pipe or terminal such as `/dev/stdin`
  /// (directories and block devices are refused). `chunkSize` is the most one
  /// ``read(appendingTo:)`` appends.
  public init(path: String, chunkSize: Int = 1 << 20) throws(LogFileError) {
    self.path = path
    self.chunkSize = max(chunkSize, 4096)
    var fd: Int32
    repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
    if fd < 0 { throw .cannotOpen(path: path, reason: LogFileReader.errnoText()) }
    var info = stat()
    if fstat(fd, &info) != 0 {
      let reason = LogFileReader.errnoText()
      closeDescriptor(fd)
      throw .cannotOpen(path: path, reason: reason)
    }
    let type = info.st_mode & S_IFMT
    if type == S_IFDIR || type == S_IFBLK {
      closeDescriptor(fd)
      throw .notRegularFile(path: path)
    }
    descriptor = fd
    var magic: [UInt8] = [0, 0]
    var got = 0
    if type == S_IFREG {
      got = magic.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 2, 0) }
    } else {
      // A pipe or terminal (`/dev/stdin`) cannot be re-read: keep the bytes looked at.
      while got < 2 {
        let n = magic.withUnsafeMutableBufferPointer {
          readDescriptor(fd, $0.baseAddress! + got, 2 - got)
        }
        if n > 0 {
          got += n
        } else if n == 0 {
          break
        } else if errno != EINTR {
          let reason = LogFileReader.errnoText()
          closeDescriptor(fd)
          throw .readFailed(path: path, reason: reason)
        }
      }
      pushback = Array(magic.prefix(got))
      compressedBytesRead = Int64(got)
    }
    isGzip = got == 2 && magic[0] == 0x1F && magic[1] == 0x8B
    outputBuffer = .allocate(capacity: self.chunkSize)
    if isGzip {
      guard let state = GzipState(inputSize: self.chunkSize) else {
        outputBuffer.deallocate()
        closeDescriptor(fd)
        throw .corruptGzip(path: path, detail: "zlib could not be initialised")
      }
      gzip = state
    }
  }

  deinit { close() }

  /// Appends the next chunk of (decompressed) bytes to `buffer`, at most the chunk size, and
  /// returns how many were appended; 0 at the end of the file.
  public func read(appendingTo buffer: inout [UInt8]) throws(LogFileError) -> Int {
    if let error = pendingError {
      pendingError = nil
      throw error
    }
    guard descriptor >= 0 else { return 0 }
    if !skipped.isEmpty {
      buffer.append(contentsOf: skipped)
      defer { skipped = [] }
      return skipped.count
    }
    let count = isGzip ? inflateChunk() : try readPlain()
    if count > 0 {
      buffer.append(contentsOf: UnsafeBufferPointer(start: outputBuffer, count: count))
      return count
    }
    if let error = pendingError {
      pendingError = nil
      throw error
    }
    return 0
  }

  /// Moves past the next `count` bytes of content without handing them out: a seek for a plain
  /// file, decompress-and-drop for gzip. Used to resume a file at a checkpoint.
  public func skip(_ count: UInt64) throws(LogFileError) {
    guard count > 0, descriptor >= 0 else { return }
    if !isGzip && pushback.isEmpty {
      if lseek(descriptor, off_t(count), SEEK_CUR) < 0 {
        throw .readFailed(path: path, reason: LogFileReader.errnoText())
      }
      compressedBytesRead += Int64(count)
      return
    }
    var left = count
    var scratch: [UInt8] = []
    while left > 0 {
      scratch.removeAll(keepingCapacity: true)
      let n = try read(appendingTo: &scratch)
      if n == 0 { return }
      if UInt64(n) > left {
        skipped = Array(scratch[Int(left)...])
        return
      }
      left -= UInt64(n)
    }
  }

  /// The ``FileFingerprint`` of the open plain file's head as it is now (nil for gzip, a
  /// closed reader, or a first line not complete yet).
  public func headFingerprint(maxLineBytes: Int) -> UInt64? {
    guard descriptor >= 0, !isGzip else { return nil }
    return FileFingerprint.compute(descriptor: descriptor, maxLineBytes: maxLineBytes)
  }

  /// `fstat` of the open file: its size, links and identity now. False once closed.
  public func status(_ info: inout stat) -> Bool {
    descriptor >= 0 && fstat(descriptor, &info) == 0
  }

  /// Releases the file and the buffers. Later reads return 0. Called by `deinit` too.
  public func close() {
    guard descriptor >= 0 else { return }
    closeDescriptor(descriptor)
    descriptor = -1
    gzip?.release()
    gzip = nil
    outputBuffer.deallocate()
  }

  // MARK: - Plain files

  private func readPlain() throws(LogFileError) -> Int {
    try readRaw(into: outputBuffer, count: chunkSize)
  }

  /// `read` from the file (after any bytes kept back), retrying on EINTR; 0 at the end.
  private func readRaw(into destination: UnsafeMutablePointer<UInt8>, count: Int)
    throws(LogFileError) -> Int
  {
    if !pushback.isEmpty {
      let n = min(count, pushback.count)
      pushback.withUnsafeBufferPointer { destination.update(from: $0.baseAddress!, count: n) }
      pushback.removeFirst(n)
      return n
    }
    while true {
      let n = readDescriptor(descriptor, destination, count)
      if n >= 0 {
        compressedBytesRead += Int64(n)
        return n
      }
      if errno != EINTR { throw .readFailed(path: path, reason: LogFileReader.errnoText()) }
    }
  }

  // MARK: - Gzip

  /// Inflates into `outputBuffer` until it is full or the input ends. Records a problem in
  /// `pendingError` (thrown once the bytes before it were handed out).
  private func inflateChunk() -> Int {
    guard let gzip else { return 0 }
    let stream = gzip.stream
    stream.pointee.next_out = outputBuffer
    stream.pointee.avail_out = UInt32(chunkSize)
    func produced() -> Int { chunkSize - Int(stream.pointee.avail_out) }
    while stream.pointee.avail_out > 0 && !gzip.finished {
      if stream.pointee.avail_in == 0 && !gzip.inputEnded {
        do { try fillInput(gzip) } catch {
          pendingError = error
          return produced()
        }
      }
      if gzip.atMemberStart {
        // Between members: another member, zero padding, or the end.
        skipZeroPadding(gzip)
        if stream.pointee.avail_in == 0 {
          if gzip.inputEnded {
            gzip.finished = true
            break
          }
          continue
        }
        if gzip.membersDone > 0 && stream.pointee.next_in.pointee != 0x1F {
          pendingError = .corruptGzip(
            path: path,
            detail:
              "unexpected bytes after gzip member \(gzip.membersDone) (at compressed byte \(consumedOffset(gzip)))"
          )
          gzip.finished = true
          break
        }
        gzip.atMemberStart = false
      }
      let status = inflate(stream, Z_NO_FLUSH)
      switch status {
      case Z_OK:
        continue
      case Z_STREAM_END:
        gzip.membersDone += 1
        inflateReset(stream)
        gzip.atMemberStart = true
      case Z_BUF_ERROR where stream.pointee.avail_in == 0 && !gzip.inputEnded:
        continue  // needs more input
      case Z_BUF_ERROR:
        if stream.pointee.avail_out == 0 { continue }
        pendingError = .corruptGzip(
          path: path, detail: "the file ends inside gzip member \(gzip.membersDone + 1) (truncated)"
        )
        gzip.finished = true
      default:
        let message = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(status)"
        pendingError = .corruptGzip(
          path: path,
          detail:
            "\(message) in gzip member \(gzip.membersDone + 1) (near compressed byte \(consumedOffset(gzip)))"
        )
        gzip.finished = true
      }
    }
    return produced()
  }

  private func fillInput(_ gzip: GzipState) throws(LogFileError) {
    let n: Int
    do { n = try readRaw(into: gzip.input, count: gzip.inputSize) } catch {
      gzip.inputEnded = true
      gzip.finished = true
      throw error
    }
    if n == 0 {
      gzip.inputEnded = true
    } else {
      gzip.stream.pointee.next_in = gzip.input
      gzip.stream.pointee.avail_in = UInt32(n)
    }
  }

  /// Drops zero bytes at a member boundary (some tools pad gzip files to a block size).
  private func skipZeroPadding(_ gzip: GzipState) {
    guard gzip.membersDone > 0 else { return }
    let stream = gzip.stream
    while stream.pointee.avail_in > 0 && stream.pointee.next_in.pointee == 0 {
      stream.pointee.next_in += 1
      stream.pointee.avail_in -= 1
    }
  }

  /// Offset in the file of the next compressed byte zlib will consume.
  private func consumedOffset(_ gzip: GzipState) -> Int64 {
    compressedBytesRead - Int64(gzip.stream.pointee.avail_in)
  }

  private static func errnoText() -> String { String(cString: strerror(errno)) }
}

// The reader's own `read` and `close` hide the POSIX functions inside the class.
private func readDescriptor(_ fd: Int32, _ buffer: UnsafeMutablePointer<UInt8>, _ count: Int) -> Int
{
  read(fd, buffer, count)
}

private func closeDescriptor(_ fd: Int32) {
  _ = close(fd)
}

/// Why a log file could not be read.
public enum LogFileError: Error, Equatable, CustomStringConvertible {
  /// The file could not be opened (missing, no permission…); `reason` is the system's text.
  case cannotOpen(path: String, reason: String)
  /// The path names a directory or a block device.
  case notRegularFile(path: String)
  /// `read` failed; `reason` is the system's text.
  case readFailed(path: String, reason: String)
  /// The gzip data is damaged or cut short; the bytes before the damage were delivered.
  case corruptGzip(path: String, detail: String)

  public var description: String {
    switch self {
    case .cannotOpen(let path, let reason):
      return "\(path): cannot open: \(reason)"
    case .notRegularFile(let path):
      return
        "\(path): not a regular file; point the source at log files, not directories or devices"
    case .readFailed(let path, let reason):
      return "\(path): read failed: \(reason)"
    case .corruptGzip(let path, let detail):
      return
        "\(path): corrupt gzip data: \(detail); the lines before the damage were read (check the file with `gzip -t`)"
    }
  }
}

/// The zlib stream of a gzip file and its input buffer. The `z_stream` lives on the heap
/// because zlib keeps a pointer to it.
private final class GzipState {
  let stream: UnsafeMutablePointer<z_stream>
  let input: UnsafeMutablePointer<UInt8>
  let inputSize: Int
  var inputEnded = false
  var finished = false
  var atMemberStart = true
  var membersDone = 0
  private var released = false

  init?(inputSize: Int) {
    self.inputSize = inputSize
    stream = .allocate(capacity: 1)
    stream.initialize(to: z_stream())
    input = .allocate(capacity: inputSize)
    if tb_inflate_init_auto(stream) != Z_OK {
      stream.deallocate()
      input.deallocate()
      return nil
    }
  }

  func release() {
    guard !released else { return }
    released = true
    inflateEnd(stream)
    stream.deallocate()
    input.deallocate()
  }

  deinit { release() }
}
