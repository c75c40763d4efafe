/// Writing JSON text by hand, where building values to encode would cost more than the text.
public enum JSONText {
  /// Appends `s` as a JSON string literal (quotes, backslash escapes, `\u00XX` for control
  /// characters; other bytes as they are).
  public static func appendString(_ out: inout [UInt8], _ s: String) {
    var s = s
    s.withUTF8 { appendString(&out, $0) }
  }

  /// Appends the UTF-8 bytes `text` as a JSON string literal. Runs of bytes that need no
  /// escape are copied whole (a byte-by-byte append was most of writing a timeline row's
  /// attributes).
  public static func appendString(_ out: inout [UInt8], _ text: UnsafeBufferPointer<UInt8>) {
    out.append(0x22)
    var run = 0
    for i in 0..<text.count {
      let c = text[i]
      if c >= 0x20 && c != 0x22 && c != 0x5C { continue }
      if run < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: text[run..<i])) }
      run = i + 1
      switch c {
      case 0x22: out.append(contentsOf: [0x5C, 0x22])
      case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
      case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
      case 0x0D: out.append(contentsOf: [0x5C, 0x72])
      case 0x09: out.append(contentsOf: [0x5C, 0x74])
      default:
        let hex: StaticString = "0123456789abcdef"
        hex.withUTF8Buffer { h in
          out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, h[Int(c >> 4)], h[Int(c & 0xF)]])
        }
      }
    }
    if run < text.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: text[run...])) }
    out.append(0x22)
  }
}
