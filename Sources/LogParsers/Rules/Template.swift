/// A string with `${capture}` references, resolved to capture slots at compile time.
struct Template: Sendable {
  enum Part: Sendable {
    case literal(String)
    case slot(Int)
  }
  let parts: [Part]
  let text: String

  var isLiteral: Bool { parts.allSatisfy { if case .literal = $0 { true } else { false } } }
  var slots: [Int] { parts.compactMap { if case .slot(let s) = $0 { s } else { nil } } }

  /// Parses `text`; `slotFor` maps a capture name to its slot or nil when unknown.
  init(_ text: String, slotFor: (String) -> Int?) throws(TemplateError) {
    self.text = text
    var parts: [Part] = []
    var literal = ""
    var rest = Substring(text)
    while let open = rest.range(of: "${") {
      literal += rest[..<open.lowerBound]
      let after = rest[open.upperBound...]
      guard let close = after.firstIndex(of: "}") else { throw .unclosed(text) }
      let name = String(after[..<close])
      guard let slot = slotFor(name) else { throw .unknownCapture(name) }
      if !literal.isEmpty {
        parts.append(.literal(literal))
        literal = ""
      }
      parts.append(.slot(slot))
      rest = after[after.index(after: close)...]
    }
    literal += rest
    if !literal.isEmpty { parts.append(.literal(literal)) }
    self.parts = parts
  }

  /// The rendered text, or nil when a referenced capture is absent or the result is empty.
  @inline(__always)
  func render(_ values: [String?]) -> String? {
    if parts.count == 1 {
      switch parts[0] {
      case .literal(let s): return s
      case .slot(let i):
        guard let v = values[i], !v.isEmpty else { return nil }
        return v
      }
    }
    var out = ""
    for part in parts {
      switch part {
      case .literal(let s): out += s
      case .slot(let i):
        guard let v = values[i], !v.isEmpty else { return nil }
        out += v
      }
    }
    return out.isEmpty ? nil : out
  }
}

enum TemplateError: Error {
  case unclosed(String)
  case unknownCapture(String)
}
