/// A path into an XML message body, compiled once when the rule is loaded and evaluated
/// against each parsed body by `XMLParsed.value(_:)`. A small subset of XPath:
///
/// ```
/// path      = ("/" | "//") step { ("/" | "//") step } [ "/text()" ]
/// step      = test { predicate } | "@" test         (an attribute step must be the last)
/// test      = "*" | [prefix ":"] local | prefix ":*"
/// predicate = "[" N "]" | "[" "@" test "=" quoted "]" | "[" test "=" quoted "]"
/// quoted    = "'" … "'" | '"' … '"'                 (no escapes; spaces allowed around "=")
/// ```
///
/// - `/a/b/c` starts at the document element: the first step must match the root element.
/// - `//` means "at any depth below" (descendant): `//JobId` anywhere in the document,
///   `/Envelope//JobId` anywhere inside `Envelope`; `//@id` and `/a//@id` take the attribute
///   from the first element (`a` itself included in the latter) that has it.
/// - `*` matches any element (`@*` any attribute), `m:*` any element in the namespace bound
///   to `m`.
/// - `[N]` is the 1-based position among the siblings that match the step (and any predicate
///   written before it), as in XPath: `/Jobs/Job[2]` is the second `Job` child of `Jobs`.
///   `[@attr='v']` keeps elements whose attribute equals `v` exactly; `[child='v']` keeps
///   elements with a child element whose value (trimmed text, as below) equals `v`.
/// - A trailing `/text()` changes nothing: an element's value is already its text.
///
/// **Namespaces.** `namespaces` maps each prefix used in the path to a namespace URI; the
/// prefixes in the document do not matter, only the URIs. A prefixed step (`m:JobId`,
/// `@m:code`) matches only elements or attributes in that namespace URI; a prefix mapped to
/// the empty string matches only names in no namespace. An **unprefixed** step matches by
/// local name in any namespace (or none), so a document with a default namespace
/// (`<Envelope xmlns="urn:x">`) is read with plain `/Envelope/Body/JobId` and integrators need
/// not declare it; declare a prefix only to tell apart equal local names in different
/// namespaces. The `xml` prefix is predeclared. Using a prefix that is not in the map is a
/// compile error.
///
/// **Values.** An element's value is its text content (all descendant text and CDATA,
/// concatenated; comments and processing instructions are skipped) trimmed of leading and
/// trailing XML whitespace (space, tab, CR, LF); an element with no text has the value "".
/// An attribute's value is its (normalized, untrimmed) value. References to entities declared
/// in a DTD are never expanded and contribute nothing (`&lt;`, `&amp;`, … and character
/// references are always decoded). The first match in document order wins; no match is nil.
public struct XMLPath: Sendable {
  /// The path as written in the rule.
  public let text: String
  // The compiled form is flat and trivially copyable so that evaluation walks it through
  // buffer pointers without reference counting: names and values live NUL-terminated in
  // `strings` and are compared byte by byte against libxml2's names.

  /// Element steps, in order. An attribute reached with `//` (`//@id`) adds a final
  /// `descendantOrSelf` step that matches any element.
  let steps: [Step]
  /// The predicates of all steps; each step owns a contiguous range.
  let predicates: [Predicate]
  /// Names, namespace URIs and predicate values, each followed by a NUL; never empty.
  let strings: [UInt8]
  /// The final attribute step, nil when the path selects an element.
  let attribute: NameTest?
  /// How many leading steps use the child axis; they are evaluated top-down, the rest by
  /// scanning the subtree they lead to.
  let leadingChildSteps: Int

  /// Compiles `text`. `namespaces` maps prefix → namespace URI for the prefixes the path uses
  /// (the rule's `namespaces`). The error names the column and what to change.
  public init(_ text: String, namespaces: [String: String]) throws(XMLPathError) {
    self.text = text
    var parser = Parser(text: text, namespaces: namespaces)
    let (steps, attribute) = try parser.parse()
    self.steps = steps
    self.attribute = attribute
    predicates = parser.predicates
    strings = parser.strings
    var leading = 0
    while leading < steps.count, steps[leading].axis == .child { leading += 1 }
    leadingChildSteps = leading
  }

  /// Matches an element or attribute name. Offsets are into `strings`.
  struct NameTest: Sendable, Equatable {
    /// The local name; `any` for every name.
    var local: Int32 = NameTest.any
    /// The namespace URI; `any` for every namespace (or none). An empty URI: no namespace.
    var uri: Int32 = NameTest.any
    static let any: Int32 = -1
  }

  enum Axis: Sendable, Equatable { case child, descendant, descendantOrSelf }

  struct Predicate: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
      /// 1-based `position` among the siblings that pass the name test and the earlier
      /// predicates.
      case position
      /// An attribute matching `test` whose value equals the value exactly.
      case attribute
      /// A child element matching `test` whose trimmed text equals the value.
      case child
    }
    var kind: Kind
    var position = 0
    var test = NameTest()
    /// The expected value: `valueCount` bytes at offset `value` in `strings`.
    var value: Int32 = 0
    var valueCount: Int32 = 0
  }

  struct Step: Sendable, Equatable {
    var axis: Axis
    var test: NameTest
    /// This step's predicates: `predicates[firstPredicate..<endPredicate]`.
    var firstPredicate: Int
    var endPredicate: Int
    /// Whether a position predicate is among them.
    var hasPosition: Bool
  }
}

extension XMLPath: CustomStringConvertible, Equatable {
  public var description: String { text }
}

/// A path that does not compile: `message` says what to change, `column` (1-based, counted in
/// Unicode scalars of the path text) where.
public struct XMLPathError: Error, CustomStringConvertible, Sendable, Equatable {
  public var message: String
  public var column: Int

  public init(message: String, column: Int) {
    self.message = message
    self.column = column
  }

  public var description: String { "column \(column): \(message)" }
}

extension XMLPath {
  /// The namespace the `xml` prefix is bound to by definition.
  static let xmlNamespace = "http://www.w3.org/XML/1998/namespace"

  private struct Parser {
    let chars: [Unicode.Scalar]
    let namespaces: [String: String]
    var i = 0
    var predicates: [Predicate] = []
    /// Starts with the empty string, so it is never empty (and "no namespace" is at 0).
    var strings: [UInt8] = [0]

    init(text: String, namespaces: [String: String]) {
      chars = Array(text.unicodeScalars)
      self.namespaces = namespaces
    }

    /// Stores `bytes` NUL-terminated in `strings` (once) and returns the offset.
    private mutating func store(_ bytes: some Collection<UInt8>) -> Int32 {
      let needle = Array(bytes) + [0]
      if let found = strings.indices.first(where: { strings[$0...].starts(with: needle) }) {
        return Int32(found)
      }
      let offset = Int32(strings.count)
      strings += needle
      return offset
    }

    private func fail(_ message: String, at index: Int) -> XMLPathError {
      XMLPathError(message: message, column: index + 1)
    }

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
      i + offset < chars.count ? chars[i + offset] : nil
    }

    private func describe(_ c: Unicode.Scalar) -> String {
      c == " " ? "space" : "'\(Character(c))'"
    }

    mutating func parse() throws(XMLPathError) -> ([Step], NameTest?) {
      guard !chars.isEmpty else {
        throw fail(
          "empty path: write a path such as '/Envelope/Body/JobId' or '//JobId'", at: 0)
      }
      guard chars[0] == "/" else {
        throw fail(
          "a path starts with '/' (from the document element, '/Root/Child') or '//' "
            + "(anywhere, '//Child')", at: 0)
      }
      var steps: [Step] = []
      var attribute: (test: NameTest, axis: Axis, at: Int)?
      var textAt: Int?
      while i < chars.count {
        guard chars[i] == "/" else {
          if let at = textAt { throw fail("'text()' must be the last step", at: at) }
          throw fail(
            "unexpected \(describe(chars[i])): separate steps with '/' or '//'", at: i)
        }
        i += 1
        var axis = Axis.child
        if peek() == "/" {
          axis = .descendant
          i += 1
        }
        if let at = attribute?.at { throw fail("'@attr' must be the last step", at: at) }
        if let at = textAt { throw fail("'text()' must be the last step", at: at) }
        guard let c = peek(), c != "/" else {
          throw fail(
            "empty step: write an element name, '*', '@attribute' or 'text()' after '/'", at: i)
        }
        if c == "@" {
          let at = i
          i += 1
          let test = try nameTest(attribute: true)
          if peek() == "[" { throw fail("an attribute step cannot have predicates", at: i) }
          if steps.isEmpty && axis == .child {
            throw fail(
              "'@attr' needs an element step before it: write '/Root/@attr' or '//@attr'", at: at)
          }
          attribute = (test, axis, at)
          continue
        }
        if c == "." {
          throw fail(
            "'.' and '..' steps are not supported: write the path down from the document "
              + "element", at: i)
        }
        if startsText() {
          if steps.isEmpty {
            throw fail("'text()' needs an element step before it, e.g. '/Root/text()'", at: i)
          }
          if axis != .child {
            throw fail("'//text()' is not supported: write '/text()' after an element step", at: i)
          }
          textAt = i
          i += 6
          continue
        }
        let test = try nameTest(attribute: false)
        let first = predicates.count
        try parsePredicates()
        let hasPosition = predicates[first...].contains { $0.kind == .position }
        steps.append(
          Step(
            axis: axis, test: test, firstPredicate: first, endPredicate: predicates.count,
            hasPosition: hasPosition))
      }
      if let attribute, attribute.axis != .child {
        let end = predicates.count
        steps.append(
          Step(
            axis: .descendantOrSelf, test: NameTest(), firstPredicate: end, endPredicate: end,
            hasPosition: false))
      }
      return (steps, attribute?.test)
    }

    private func startsText() -> Bool {
      let word: [Unicode.Scalar] = ["t", "e", "x", "t", "(", ")"]
      guard i + word.count <= chars.count else { return false }
      for k in 0..<word.count where chars[i + k] != word[k] { return false }
      return true
    }

    private static func isNameStart(_ c: Unicode.Scalar) -> Bool {
      switch c.value {
      case 0x41...0x5A, 0x61...0x7A, 0x5F: return true
      case 0x80...: return !c.properties.isWhitespace
      default: return false
      }
    }

    private static func isNameChar(_ c: Unicode.Scalar) -> Bool {
      isNameStart(c) || (0x30...0x39).contains(c.value) || c == "-" || c == "."
    }

    /// An NCName (no colon) at `i`, or nil when none starts there.
    private mutating func ncName() -> String? {
      guard let c = peek(), Self.isNameStart(c) else { return nil }
      var name = String.UnicodeScalarView()
      while let c = peek(), Self.isNameChar(c) {
        name.append(c)
        i += 1
      }
      return String(name)
    }

    /// `*`, `name`, `prefix:name` or `prefix:*` at `i`.
    private mutating func nameTest(attribute: Bool) throws(XMLPathError) -> NameTest {
      let start = i
      if peek() == "*" {
        i += 1
        if peek() == ":" {
          throw fail(
            "'*:name' is not supported: an unprefixed name already matches in any namespace",
            at: start)
        }
        return NameTest()
      }
      guard let first = ncName() else {
        guard let c = peek() else {
          throw fail(
            attribute ? "'@' needs an attribute name" : "empty step: write an element name",
            at: i)
        }
        if attribute { throw fail("'@' needs an attribute name, not \(describe(c))", at: i) }
        throw fail(
          "unexpected \(describe(c)): a step is an element name, '*', '@attribute' or 'text()'",
          at: i)
      }
      if peek() == "(" {
        throw fail(
          "unsupported function '\(first)()': only a trailing '/text()' is supported", at: start)
      }
      guard peek() == ":" else { return NameTest(local: store(first.utf8)) }
      if peek(1) == ":" {
        throw fail(
          "axes such as '\(first)::' are not supported: use '/', '//' and '@'", at: start)
      }
      i += 1
      var local = NameTest.any
      if peek() == "*" {
        i += 1
      } else if let name = ncName() {
        local = store(name.utf8)
      } else {
        throw fail("missing local name after '\(first):'", at: i)
      }
      let uri: String
      if let declared = namespaces[first] {
        uri = declared
      } else if first == "xml" {
        uri = XMLPath.xmlNamespace
      } else {
        throw fail(
          "unknown namespace prefix '\(first)': declare it under the rule's namespaces",
          at: start)
      }
      return NameTest(local: local, uri: store(uri.utf8))
    }

    private mutating func skipSpaces() {
      while let c = peek(), c == " " || c == "\t" { i += 1 }
    }

    /// Appends the step's predicates to `predicates`.
    private mutating func parsePredicates() throws(XMLPathError) {
      while peek() == "[" {
        let open = i
        i += 1
        skipSpaces()
        guard let c = peek() else {
          throw fail("unterminated predicate: close it with ']'", at: open)
        }
        if c == "]" {
          throw fail(
            "empty predicate: write [N], [@attr='value'] or [child='value']", at: open)
        }
        if ("0"..."9").contains(c) {
          let start = i
          var n = 0
          while let d = peek(), ("0"..."9").contains(d) {
            n = n * 10 + Int(d.value - 0x30)
            if n > 1_000_000_000 { throw fail("position is too large", at: start) }
            i += 1
          }
          if n == 0 { throw fail("positions start at 1: write [1] for the first", at: start) }
          try close(open)
          predicates.append(Predicate(kind: .position, position: n))
        } else if c == "@" {
          i += 1
          let test = try nameTest(attribute: true)
          let (value, count) = try equalsValue(open)
          predicates.append(
            Predicate(kind: .attribute, test: test, value: value, valueCount: count))
        } else if c == "*" || Self.isNameStart(c) {
          let test = try nameTest(attribute: false)
          let (value, count) = try equalsValue(open)
          predicates.append(Predicate(kind: .child, test: test, value: value, valueCount: count))
        } else {
          throw fail(
            "unexpected \(describe(c)) in predicate: write [N], [@attr='value'] or "
              + "[child='value']", at: i)
        }
      }
    }

    /// `= 'value' ]` after the name in a predicate opened at `open`: the value's offset in
    /// `strings` and its length in bytes.
    private mutating func equalsValue(_ open: Int) throws(XMLPathError) -> (Int32, Int32) {
      skipSpaces()
      guard let c = peek() else {
        throw fail("unterminated predicate: close it with ']'", at: open)
      }
      guard c == "=" else {
        throw fail(
          "expected '=' and a quoted value, e.g. [@type='end'] or [Kind='end']", at: i)
      }
      i += 1
      skipSpaces()
      guard let quote = peek() else {
        throw fail("unterminated predicate: close it with ']'", at: open)
      }
      guard quote == "'" || quote == "\"" else {
        throw fail("quote the value: '…' or \"…\"", at: i)
      }
      let start = i
      i += 1
      var value = String.UnicodeScalarView()
      while let c = peek(), c != quote {
        value.append(c)
        i += 1
      }
      guard peek() == quote else {
        throw fail("unterminated string: close it with \(quote)", at: start)
      }
      i += 1
      try close(open)
      let bytes = Array(String(value).utf8)
      return (store(bytes), Int32(bytes.count))
    }

    /// The `]` closing the predicate opened at `open`.
    private mutating func close(_ open: Int) throws(XMLPathError) {
      skipSpaces()
      guard let c = peek() else {
        throw fail("unterminated predicate: close it with ']'", at: open)
      }
      guard c == "]" else {
        throw fail("unexpected \(describe(c)) in predicate: expected ']'", at: i)
      }
      i += 1
    }
  }
}
