/// Reads the values at a fixed set of JSON pointers from one JSON object in a single pass over
/// its UTF-8 bytes, skipping everything no pointer leads into — what a JSON rule needs,
/// without building the whole document. Scalars come back as their text (strings unescaped,
/// numbers as written, `true`/`false`); objects and arrays as their JSON text; `null` and
/// missing paths as nil.
struct JSONFieldScanner {
  /// How many pointers (and values a scan fills).
  private let pointerCount: Int

  /// The pointers as a trie: node 0 is the document; a node's children are the member names
  /// (or array indices) some pointer goes on with, its `exact` the pointers that end there.
  /// Scanning follows it without building candidate lists (an array a member, copies of the
  /// nested token arrays): a fifth of a queue consumer's time went there.
  struct Node {
    var children: Range<Int> = 0..<0  // into `edges`
    var exact: Range<Int> = 0..<0  // into `exactPointers`
  }
  struct Edge {
    var token: Range<Int>  // into `tokenBytes`
    var node: Int
  }
  private let nodes: [Node]
  private let edges: [Edge]
  private let tokenBytes: [UInt8]
  private let exactPointers: [Int]

  init(pointers: [[String]]) {
    pointerCount = pointers.count
    // Build with per-node lists, then lay them out flat, children of a node side by side.
    var children: [[(token: [UInt8], node: Int)]] = [[]]
    var exact: [[Int]] = [[]]
    // Each pointer as its reference tokens (`/a/b/0` → ["a", "b", "0"]), as UTF-8.
    for (n, tokens) in pointers.enumerated() {
      var node = 0
      for token in tokens.map({ Array($0.utf8) }) {
        if let next = children[node].first(where: { $0.token == token })?.node {
          node = next
        } else {
          children.append([])
          exact.append([])
          children[node].append((token, children.count - 1))
          node = children.count - 1
        }
      }
      exact[node].append(n)
    }
    var nodes: [Node] = []
    var edges: [Edge] = []
    var bytes: [UInt8] = []
    var exactFlat: [Int] = []
    for k in children.indices {
      let first = edges.count
      for c in children[k] {
        edges.append(Edge(token: bytes.count..<(bytes.count + c.token.count), node: c.node))
        bytes.append(contentsOf: c.token)
      }
      let firstExact = exactFlat.count
      exactFlat.append(contentsOf: exact[k])
      nodes.append(
        Node(children: first..<edges.count, exact: firstExact..<exactFlat.count))
    }
    self.nodes = nodes
    self.edges = edges
    self.tokenBytes = bytes
    self.exactPointers = exactFlat
  }

  /// Fills `values` (one per pointer). Returns false when `text` is not a JSON object.
  func scan(_ text: UnsafeBufferPointer<UInt8>, into values: inout [String?]) -> Bool {
    if values.count == pointerCount {
      for k in values.indices { values[k] = nil }
    } else {
      values = [String?](repeating: nil, count: pointerCount)
    }
    var p = Parser(text: text)
    p.skipSpace()
    guard p.peek == 0x7B else { return false }
    let ok = nodes.withUnsafeBufferPointer { nodes in
      edges.withUnsafeBufferPointer { edges in
        tokenBytes.withUnsafeBufferPointer { tokens in
          exactPointers.withUnsafeBufferPointer { exact in
            let walk = Walk(nodes: nodes, edges: edges, tokens: tokens, exact: exact)
            return walk.value(&p, node: 0, &values)
          }
        }
      }
    }
    guard ok else { return false }
    p.skipSpace()
    return p.i == text.count
  }

  /// One scan's view of the trie.
  private struct Walk {
    let nodes: UnsafeBufferPointer<Node>
    let edges: UnsafeBufferPointer<Edge>
    let tokens: UnsafeBufferPointer<UInt8>
    let exact: UnsafeBufferPointer<Int>

    /// The child of `node` named `key` (raw bytes of `text`, or unescaped when it held
    /// escapes), if a pointer goes on through it.
    func child(_ node: Int, _ key: Parser.Key, _ text: UnsafeBufferPointer<UInt8>) -> Int? {
      for e in edges[nodes[node].children] {
        let token = UnsafeBufferPointer(rebasing: tokens[e.token])
        switch key {
        case .raw(let r):
          guard token.count == r.count else { continue }
          var k = r.lowerBound
          var same = true
          for b in token {
            if text[k] != b {
              same = false
              break
            }
            k += 1
          }
          if same { return e.node }
        case .unescaped(let bytes):
          if token.elementsEqual(bytes) { return e.node }
        }
      }
      return nil
    }

    /// The value at `p`, at trie node `node`. Strings and members no pointer leads into are
    /// skipped without copying.
    func value(_ p: inout Parser, node: Int, _ values: inout [String?]) -> Bool {
      p.skipSpace()
      let descend = !nodes[node].children.isEmpty
      let ends = exact[nodes[node].exact]
      let start = p.i
      guard let c = p.peek else { return false }
      switch c {
      case 0x7B where descend:
        p.i += 1
        p.skipSpace()
        if p.peek == 0x7D {
          p.i += 1
        } else {
          while true {
            p.skipSpace()
            guard let key = p.key() else { return false }
            p.skipSpace()
            guard p.peek == 0x3A else { return false }
            p.i += 1
            guard member(&p, key, node: node, &values) else { return false }
            p.skipSpace()
            if p.peek == 0x2C {
              p.i += 1
              continue
            }
            guard p.peek == 0x7D else { return false }
            p.i += 1
            break
          }
        }
      case 0x5B where descend:
        p.i += 1
        p.skipSpace()
        var index = 0
        if p.peek == 0x5D {
          p.i += 1
        } else {
          while true {
            let key = Parser.Key.unescaped(Array(String(index).utf8))
            guard member(&p, key, node: node, &values) else { return false }
            index += 1
            p.skipSpace()
            if p.peek == 0x2C {
              p.i += 1
              continue
            }
            guard p.peek == 0x5D else { return false }
            p.i += 1
            break
          }
        }
      case 0x22:
        guard !ends.isEmpty else { return p.skipString() }
        guard let s = p.string() else { return false }
        let text = String(decoding: s, as: UTF8.self)
        for n in ends { values[n] = text }
        return true
      default:
        guard p.skipValue() else { return false }
        if !ends.isEmpty {
          let raw = UnsafeBufferPointer(rebasing: p.text[start..<p.i])
          if !(raw.count == 4 && raw[0] == 0x6E) {  // null
            let text = String(decoding: raw, as: UTF8.self)
            for n in ends { values[n] = text }
          }
        }
        return true
      }
      if !ends.isEmpty {
        let text = String(
          decoding: UnsafeBufferPointer(rebasing: p.text[start..<p.i]), as: UTF8.self)
        for n in ends { values[n] = text }
      }
      return true
    }

    /// The member `key` of the container at `node`: read where a pointer leads into it,
    /// skipped otherwise.
    func member(
      _ p: inout Parser, _ key: Parser.Key, node: Int, _ values: inout [String?]
    ) -> Bool {
      guard let next = child(node, key, p.text) else {
        p.skipSpace()
        return p.skipValue()
      }
      return value(&p, node: next, &values)
    }
  }

  struct Parser {
    let text: UnsafeBufferPointer<UInt8>
    var i = 0

    var peek: UInt8? { i < text.count ? text[i] : nil }

    mutating func skipSpace() {
      while i < text.count, text[i] == 0x20 || text[i] == 0x09 || text[i] == 0x0A || text[i] == 0x0D
      { i += 1 }
    }

    /// A member name: its bytes in `text` when it has no escapes (no copy), else unescaped.
    enum Key {
      case raw(Range<Int>)
      case unescaped([UInt8])
    }

    mutating func key() -> Key? {
      guard peek == 0x22 else { return nil }
      var k = i + 1
      while k < text.count {
        let c = text[k]
        if c == 0x22 {
          let r = (i + 1)..<k
          i = k + 1
          return .raw(r)
        }
        if c == 0x5C { return string().map { .unescaped($0) } }
        k += 1
      }
      return nil
    }

    /// A string at `i`, unescaped.
    mutating func string() -> [UInt8]? {
      guard peek == 0x22 else { return nil }
      i += 1
      var out: [UInt8] = []
      var runStart = i
      while i < text.count {
        let c = text[i]
        if c == 0x22 {
          out.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<i]))
          i += 1
          return out
        }
        if c == 0x5C {
          out.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<i]))
          i += 1
          guard i < text.count else { return nil }
          switch text[i] {
          case 0x6E: out.append(0x0A)
          case 0x74: out.append(0x09)
          case 0x72: out.append(0x0D)
          case 0x62: out.append(0x08)
          case 0x66: out.append(0x0C)
          case 0x75:
            guard var scalar = hex4(i + 1) else { return nil }
            i += 4
            if (0xD800..<0xDC00).contains(scalar), i + 6 < text.count, text[i + 1] == 0x5C,
              text[i + 2] == 0x75, let low = hex4(i + 3), (0xDC00..<0xE000).contains(low)
            {
              scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
              i += 6
            }
            let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
            out.append(contentsOf: Array(String(Character(u)).utf8))
          default: out.append(text[i])
          }
          i += 1
          runStart = i
          continue
        }
        i += 1
      }
      return nil
    }

    func hex4(_ at: Int) -> UInt32? {
      guard at + 4 <= text.count else { return nil }
      var v: UInt32 = 0
      for k in at..<(at + 4) {
        let c = text[k]
        let d: UInt8
        switch c {
        case 0x30...0x39: d = c - 0x30
        case 0x41...0x46: d = c - 0x41 + 10
        case 0x61...0x66: d = c - 0x61 + 10
        default: return nil
        }
        v = v << 4 | UInt32(d)
      }
      return v
    }

    /// Skips one value of any kind.
    mutating func skipValue() -> Bool {
      skipSpace()
      guard let c = peek else { return false }
      switch c {
      case 0x22: return skipString()
      case 0x7B, 0x5B:
        var depth = 0
        while i < text.count {
          let d = text[i]
          if d == 0x22 {
            guard skipString() else { return false }
            continue
          }
          if d == 0x7B || d == 0x5B { depth += 1 }
          if d == 0x7D || d == 0x5D {
            depth -= 1
            if depth == 0 {
              i += 1
              return true
            }
          }
          i += 1
        }
        return false
      default:
        let start = i
        while i < text.count {
          let d = text[i]
          if d == 0x2C || d == 0x7D || d == 0x5D || d == 0x20 || d == 0x09 || d == 0x0A || d == 0x0D
          {
            break
          }
          i += 1
        }
        return i > start
      }
    }

    mutating func skipString() -> Bool {
      i += 1
      while i < text.count {
        if text[i] == 0x5C {
          i += 2
          continue
        }
        if text[i] == 0x22 {
          i += 1
          return true
        }
        i += 1
      }
      return false
    }
  }
}
