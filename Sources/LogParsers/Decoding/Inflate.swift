import CZlib

/// Decompresses message bodies sent with `content_encoding: gzip` (or `deflate`, a zlib
/// stream): what Spring AMQP and other frameworks do with large payloads. The header decides
/// between gzip and zlib. Bounded: a body that inflates past `limit` bytes is refused (a small
/// message must not become gigabytes in memory).
public enum Inflate {
  public enum Failure: Error, CustomStringConvertible, Equatable {
    case corrupt(String)
    case truncated
    case tooLarge(limit: Int)

    public var description: String {
      switch self {
      case .corrupt(let why): "the compressed body is corrupt (\(why))"
      case .truncated: "the compressed body ends before its end marker"
      case .tooLarge(let limit): "the body inflates to more than \(limit) bytes"
      }
    }
  }

  public static func inflate(_ input: [UInt8], limit: Int) -> Result<[UInt8], Failure> {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    defer {
      inflateEnd(stream)
      stream.deinitialize(count: 1)
      stream.deallocate()
    }
    guard tb_inflate_init_auto(stream) == Z_OK else { return .failure(.corrupt("zlib init")) }
    var out: [UInt8] = []
    out.reserveCapacity(min(limit, max(4096, input.count * 4)))
    let chunk = 65536
    var buffer = [UInt8](repeating: 0, count: chunk)
    return input.withUnsafeBufferPointer { inBuf -> Result<[UInt8], Failure> in
      stream.pointee.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
      stream.pointee.avail_in = UInt32(inBuf.count)
      while true {
        let status = buffer.withUnsafeMutableBufferPointer { b -> Int32 in
          stream.pointee.next_out = b.baseAddress
          stream.pointee.avail_out = UInt32(chunk)
          return CZlib.inflate(stream, Z_NO_FLUSH)
        }
        let produced = chunk - Int(stream.pointee.avail_out)
        if out.count + produced > limit { return .failure(.tooLarge(limit: limit)) }
        out.append(contentsOf: buffer[0..<produced])
        switch status {
        case Z_STREAM_END: return .success(out)
        case Z_OK: continue
        case Z_BUF_ERROR:
          if stream.pointee.avail_in == 0 { return .failure(.truncated) }
          continue
        default:
          let message = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(status)"
          return .failure(.corrupt(message))
        }
      }
    }
  }
}
