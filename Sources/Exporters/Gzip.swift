import CZlib

/// gzip (RFC 1952) compression of a whole buffer, for HTTP bodies (`Content-Encoding: gzip`)
/// and compressed output files.
public enum Gzip {
  /// Compresses `bytes` into one gzip member. `level` is zlib's: 0 (store) … 9 (smallest),
  /// -1 for zlib's default; values outside are clamped.
  public static func compress(_ bytes: [UInt8], level: Int32 = 6) -> [UInt8] {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    defer { stream.deallocate() }
    // Only Z_MEM_ERROR can fail here: out of memory is fatal anyway.
    guard tb_deflate_init_gzip(stream, min(max(level, -1), 9)) == Z_OK else {
      fatalError("zlib deflateInit2 failed: out of memory")
    }
    defer { deflateEnd(stream) }
    // deflateBound covers the gzip header and trailer for a gzip stream; compress in one call.
    let bound = Int(deflateBound(stream, UInt(bytes.count)))
    var output = [UInt8](repeating: 0, count: bound)
    let written = bytes.withUnsafeBufferPointer { input in
      output.withUnsafeMutableBufferPointer { out -> Int in
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
        stream.pointee.avail_in = UInt32(input.count)
        stream.pointee.next_out = out.baseAddress
        stream.pointee.avail_out = UInt32(out.count)
        let status = deflate(stream, Z_FINISH)
        precondition(
          status == Z_STREAM_END, "deflate with deflateBound output space returned \(status)")
        return out.count - Int(stream.pointee.avail_out)
      }
    }
    output.removeLast(output.count - written)
    return output
  }
}
