import CLibXML2

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Why an XML body could not be parsed: libxml2's first error and the line it was found on.
public struct XMLBodyError: Error, CustomStringConvertible, Sendable, Equatable {
  /// libxml2's reason (`Opening and ending tag mismatch: Job line 2 and Jobs`).
  public var message: String
  /// 1-based line in the body; 0 when unknown.
  public var line: Int

  public init(message: String, line: Int) {
    self.message = message
    self.line = line
  }

  public var description: String {
    line > 0 ? "not well-formed XML: line \(line): \(message)" : "not well-formed XML: \(message)"
  }
}

/// Parses XML message bodies with libxml2, one body at a time, reusing one parser context.
/// Use one parser per thread (or per consumer task); it is not Sendable. Each successful
/// `parse` returns an independent `XMLParsed` that owns its document.
///
/// The input must already be UTF-8 (the caller transcodes the body with its `CharsetDecoder`);
/// an `encoding="windows-1251"` declaration in the prolog is ignored. Parsing is non-validating
/// and safe for untrusted input: no DTD is loaded, no external entity is read, no network is
/// used, entity references are never substituted, and libxml2's default limits (depth, text
/// size, entity amplification) stay on. Nothing is printed: errors are collected and thrown.
public final class XMLBodyParser {
  /// libxml2 global initialisation, run once per process.
  private static let library: Void = { xmlInitParser() }()
  /// Not well-formed is an error; namespace warnings are not. No NOENT, DTDLOAD, DTDATTR,
  /// DTDVALID, XINCLUDE or HUGE.
  private static let options: Int32 = {
    let flags: [xmlParserOption] = [
      XML_PARSE_NONET, XML_PARSE_NOERROR, XML_PARSE_NOWARNING, XML_PARSE_NOCDATA,
      XML_PARSE_COMPACT, XML_PARSE_IGNORE_ENC,
    ]
    return Int32(flags.reduce(0) { $0 | $1.rawValue })
  }()
  /// The context's name dictionary keeps every element and attribute name ever seen; a new
  /// context is made when it holds more than this many entries, so that a stream of
  /// ever-changing names cannot grow it without bound.
  private static let dictionaryLimit = 50_000

  /// The context every body goes through.
  private var push: xmlParserCtxtPtr
  /// Re-parses a body the push context rejected, for a better message; made on first need.
  private var read: xmlParserCtxtPtr?
  private let errors = ErrorCollector()

  public init() {
    _ = Self.library
    // A push-parser context: handing it the whole body as one final chunk costs about a
    // quarter fewer instructions than xmlCtxtReadMemory, whose memory input buffer is
    // re-checked for growth all through the parse.
    push = Self.prepare(xmlCreatePushParserCtxt(nil, nil, nil, 0, nil), nil)
  }

  deinit {
    xmlFreeParserCtxt(push)
    if let read { xmlFreeParserCtxt(read) }
  }

  /// Installs the error handler; `errors` nil drops the errors (the push context's: a body it
  /// rejects is parsed again for the message).
  private static func prepare(_ context: xmlParserCtxtPtr?, _ errors: ErrorCollector?)
    -> xmlParserCtxtPtr
  {
    guard let context else { fatalError("libxml2: out of memory") }
    // The structured handler receives every parser error (with the context as `data`) instead
    // of the generic handler that prints to stderr.
    context.pointee.sax.pointee.serror = { data, error in
      guard let data, let error else { return }
      let context = data.assumingMemoryBound(to: xmlParserCtxt.self)
      guard let owner = context.pointee._private else { return }
      Unmanaged<ErrorCollector>.fromOpaque(owner).takeUnretainedValue().record(error.pointee)
    }
    context.pointee._private = errors.map { Unmanaged.passUnretained($0).toOpaque() }
    return context
  }

  /// Parses one UTF-8 body. The error carries libxml2's first error and its line.
  public func parse(_ utf8: UnsafeBufferPointer<UInt8>) throws(XMLBodyError) -> XMLParsed {
    guard let base = utf8.baseAddress, !utf8.isEmpty else {
      throw XMLBodyError(message: "the body is empty", line: 0)
    }
    guard utf8.count <= Int(Int32.max) else {
      throw XMLBodyError(message: "the body is larger than 2 GiB", line: 0)
    }
    if xmlDictSize(push.pointee.dict) > Self.dictionaryLimit {
      xmlFreeParserCtxt(push)
      push = Self.prepare(xmlCreatePushParserCtxt(nil, nil, nil, 0, nil), nil)
    }
    // The bytes are UTF-8 and XML_PARSE_IGNORE_ENC makes libxml2 ignore the prolog's
    // `encoding=`. No encoding is named: "UTF-8" would install libxml2's UTF-8 → UTF-8
    // converter, which copies the input once more (about 15% of the parse) for the same result.
    xmlCtxtResetPush(push, nil, 0, nil, nil)
    _ = xmlCtxtUseOptions(push, Self.options)
    let status = base.withMemoryRebound(to: CChar.self, capacity: utf8.count) {
      xmlParseChunk(push, $0, Int32(utf8.count), 1)
    }
    let document = push.pointee.myDoc
    push.pointee.myDoc = nil
    if status == 0, push.pointee.wellFormed != 0, let document { return XMLParsed(document) }
    if let document { xmlFreeDoc(document) }
    return try reparse(base, utf8.count)
  }

  /// Parses a body the push parser rejected with xmlCtxtReadMemory, which names the problem
  /// better: a truncated `<a>` is "Premature end of data in tag a" rather than "Extra content
  /// at the end of the document", plain text "Start tag expected" rather than "Document is
  /// empty". Should it accept the body after all, its document is used.
  private func reparse(_ base: UnsafePointer<UInt8>, _ count: Int) throws(XMLBodyError)
    -> XMLParsed
  {
    if let context = read, xmlDictSize(context.pointee.dict) > Self.dictionaryLimit {
      xmlFreeParserCtxt(context)
      read = nil
    }
    let context = read ?? Self.prepare(xmlNewParserCtxt(), errors)
    read = context
    errors.reset()
    let document = base.withMemoryRebound(to: CChar.self, capacity: count) {
      xmlCtxtReadMemory(context, $0, Int32(count), nil, nil, Self.options)
    }
    guard let document else {
      throw errors.error ?? XMLBodyError(message: "libxml2 could not parse the body", line: 0)
    }
    return XMLParsed(document)
  }

  /// Parses `text` (tests and tools).
  public func parse(_ text: String) throws(XMLBodyError) -> XMLParsed {
    var text = text
    let result = text.withUTF8 { bytes in
      Result { () throws(XMLBodyError) -> XMLParsed in try parse(bytes) }
    }
    return try result.get()
  }
}

/// Keeps libxml2's first fatal error (and first error) of one parse.
private final class ErrorCollector {
  private var fatal: XMLBodyError?
  private var first: XMLBodyError?

  var error: XMLBodyError? { fatal ?? first }

  func reset() {
    fatal = nil
    first = nil
  }

  func record(_ error: xmlError) {
    guard error.level.rawValue >= XML_ERR_ERROR.rawValue else { return }
    let isFatal = error.level.rawValue >= XML_ERR_FATAL.rawValue
    guard isFatal ? fatal == nil : first == nil else { return }
    var message = "libxml2 error \(error.code)"
    if let text = error.message {
      // Some messages span lines ("…, indicate encoding !\nBytes: 0xFF 0xFE …").
      message = String(cString: text).split(whereSeparator: \.isNewline)
        .map { $0.trimmingXMLWhitespace() }.filter { !$0.isEmpty }.joined(separator: "; ")
    }
    let found = XMLBodyError(message: message, line: Int(error.line))
    if isFatal { fatal = found } else { first = found }
  }
}

extension Substring {
  fileprivate func trimmingXMLWhitespace() -> Substring {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
    guard let start = firstIndex(where: { !isSpace($0) }) else { return "" }
    let end = lastIndex(where: { !isSpace($0) })!
    return self[start...end]
  }
}

/// One parsed XML body. Owns the libxml2 document (freed in deinit) and reads values at
/// compiled `XMLPath`s. Not Sendable: use it on the thread that parsed it.
public final class XMLParsed {
  private let document: xmlDocPtr

  init(_ document: xmlDocPtr) { self.document = document }

  deinit { xmlFreeDoc(document) }

  /// The value at `path`: an element's trimmed text or an attribute's value, from the first
  /// match in document order; nil when nothing matches.
  public func value(_ path: XMLPath) -> String? {
    path.steps.withUnsafeBufferPointer { steps in
      path.predicates.withUnsafeBufferPointer { predicates in
        path.strings.withUnsafeBufferPointer { strings in
          let evaluation = XMLPathEvaluation(
            document: document, steps: steps, predicates: predicates,
            strings: strings.baseAddress!, attribute: path.attribute,
            leadingChildSteps: path.leadingChildSteps)
          return evaluation.value()
        }
      }
    }
  }
}

/// One evaluation of a compiled path over one document, through pointers into the path's
/// flat storage: no reference counting and no Swift strings until the final value.
private struct XMLPathEvaluation {
  typealias Node = UnsafeMutablePointer<xmlNode>
  typealias Attribute = UnsafeMutablePointer<xmlAttr>

  let document: xmlDocPtr
  let steps: UnsafeBufferPointer<XMLPath.Step>
  let predicates: UnsafeBufferPointer<XMLPath.Predicate>
  /// `XMLPath.strings`, which is never empty.
  let strings: UnsafePointer<UInt8>
  let attribute: XMLPath.NameTest?
  let leadingChildSteps: Int

  func value() -> String? {
    guard let (element, attribute) = forward(0, nil) else { return nil }
    if let attribute { return Self.value(ofAttribute: attribute) }
    return Self.value(ofElement: element)
  }

  // MARK: Finding

  private func isDocument(_ node: Node) -> Bool {
    let address: UnsafeRawPointer = UnsafeRawPointer(node)
    return address == UnsafeRawPointer(document)
  }

  /// The first child of `context`; nil `context` is the document node.
  private func firstChild(_ context: Node?) -> Node? {
    if let context { return context.pointee.children }
    return document.pointee.children
  }

  /// Evaluates the leading child steps top-down from `context` (nil: the document node). The
  /// nodes one step yields are disjoint subtrees in document order, so the first complete
  /// match found is the first in the document. Returns the element selected (for an attribute
  /// path, the element that carries it) and the attribute.
  private func forward(_ index: Int, _ context: Node?) -> (Node, Attribute?)? {
    if index == leadingChildSteps { return scan(context) }
    let step = steps[index]
    if !step.hasPosition {
      var child = firstChild(context)
      while let node = child {
        if node.pointee.type == XML_ELEMENT_NODE, matches(node, step.test),
          predicatesHold(node, step, upTo: step.endPredicate)
        {
          if let found = forward(index + 1, node) { return found }
        }
        child = node.pointee.next
      }
      return nil
    }
    // Position predicates: count, per predicate, the siblings that reached it.
    let count = step.endPredicate - step.firstPredicate
    return withUnsafeTemporaryAllocation(of: Int.self, capacity: count) { counts in
      counts.initialize(repeating: 0)
      var child = firstChild(context)
      siblings: while let node = child {
        child = node.pointee.next
        guard node.pointee.type == XML_ELEMENT_NODE, matches(node, step.test) else { continue }
        for k in 0..<count {
          let predicate = predicates[step.firstPredicate + k]
          if predicate.kind == .position {
            counts[k] += 1
            if counts[k] != predicate.position {
              // Past the position the first predicate asks for: no later sibling can match.
              if k == 0 && counts[k] > predicate.position { break siblings }
              continue siblings
            }
          } else if !predicateHolds(node, predicate) {
            continue siblings
          }
        }
        if let found = forward(index + 1, node) { return found }
      }
      return nil
    }
  }

  /// After the leading child steps: the rest (which starts with `//`) is matched by walking
  /// the subtree of `context` in document order and testing each element against the steps
  /// from the last one upwards.
  private func scan(_ context: Node?) -> (Node, Attribute?)? {
    let first = leadingChildSteps
    if first == steps.count {
      guard let element = context else { return nil }
      guard let test = attribute else { return (element, nil) }
      guard let found = self.attribute(of: element, test) else { return nil }
      return (element, found)
    }
    let lastTest = steps[steps.count - 1].test
    var next: Node?
    if let context, steps[first].axis == .descendantOrSelf {
      next = context
    } else {
      next = firstChild(context)
    }
    while let node = next {
      if node.pointee.type == XML_ELEMENT_NODE {
        if matches(node, lastTest) {
          if let test = attribute {
            if let found = self.attribute(of: node, test),
              reverse(node, first: first, stop: context)
            {
              return (node, found)
            }
          } else if reverse(node, first: first, stop: context) {
            return (node, nil)
          }
        }
        // Only elements are entered: an entity reference's children are the declaration's.
        if let child = node.pointee.children {
          next = child
          continue
        }
      }
      next = advance(from: node, stop: context)
    }
    return nil
  }

  /// The node after `node`'s subtree in document order, staying inside `stop`'s subtree.
  private func advance(from node: Node, stop: Node?) -> Node? {
    var current = node
    while true {
      if current == stop { return nil }
      if let sibling = current.pointee.next { return sibling }
      guard let parent = current.pointee.parent, parent != stop, !isDocument(parent) else {
        return nil
      }
      current = parent
    }
  }

  /// Whether the steps from `first` (the first after the top-down part) to the last match
  /// with the last step at `element`, all strictly inside `stop` (or at `stop` for a leading
  /// `descendantOrSelf`).
  ///
  /// The steps split into segments, each a `//` step followed by child steps, which match as
  /// a rigid chain of parents. Segments are matched from the last one up, each at the lowest
  /// ancestor where it fits: a lower fit leaves every ancestor a higher fit would for the
  /// segments above it, so no choice is ever revisited and the cost per element stays
  /// linear in depth × steps whatever the number of `//`.
  private func reverse(_ element: Node, first: Int, stop: Node?) -> Bool {
    var end = steps.count - 1
    var start = segmentStart(end)
    guard var top = matchSegment(start, end, at: element, stop: stop) else { return false }
    while start > first {
      let axis = steps[start].axis
      end = start - 1
      start = segmentStart(end)
      var candidate = axis == .descendantOrSelf ? top : top.pointee.parent
      var found: Node?
      while let node = candidate, node != stop, !isDocument(node) {
        found = matchSegment(start, end, at: node, stop: stop)
        if found != nil { break }
        candidate = node.pointee.parent
      }
      guard let found else { return false }
      top = found
    }
    return true
  }

  /// The first step of the segment that ends with step `end`.
  private func segmentStart(_ end: Int) -> Int {
    var start = end
    while steps[start].axis == .child { start -= 1 }
    return start
  }

  /// Matches steps `start...end` with `end` at `node`, `end - 1` at its parent and so on;
  /// returns the node step `start` matched.
  private func matchSegment(_ start: Int, _ end: Int, at node: Node, stop: Node?) -> Node? {
    var current = node
    var index = end
    while true {
      let step = steps[index]
      guard matches(current, step.test), predicatesHold(current, step, upTo: step.endPredicate)
      else { return nil }
      if index == start { return current }
      guard let parent = current.pointee.parent, parent != stop, !isDocument(parent) else {
        return nil
      }
      current = parent
      index -= 1
    }
  }

  /// Whether `element` passes `step`'s predicates before index `end`. A position counts the
  /// preceding siblings that pass the name test and the predicates before it.
  private func predicatesHold(_ element: Node, _ step: XMLPath.Step, upTo end: Int) -> Bool {
    var k = step.firstPredicate
    while k < end {
      let predicate = predicates[k]
      if predicate.kind == .position {
        var position = 1
        var sibling = element.pointee.prev
        while let node = sibling {
          if node.pointee.type == XML_ELEMENT_NODE, matches(node, step.test),
            predicatesHold(node, step, upTo: k)
          {
            position += 1
            if position > predicate.position { return false }
          }
          sibling = node.pointee.prev
        }
        if position != predicate.position { return false }
      } else if !predicateHolds(element, predicate) {
        return false
      }
      k += 1
    }
    return true
  }

  /// An attribute or child-text predicate.
  private func predicateHolds(_ element: Node, _ predicate: XMLPath.Predicate) -> Bool {
    let expected = UnsafeBufferPointer(
      start: strings + Int(predicate.value), count: Int(predicate.valueCount))
    switch predicate.kind {
    case .position:
      return true
    case .attribute:
      guard let found = attribute(of: element, predicate.test) else { return false }
      return Self.text(of: found.pointee.children, trim: false) { $0.elementsEqual(expected) }
    case .child:
      var child = element.pointee.children
      while let node = child {
        if node.pointee.type == XML_ELEMENT_NODE, matches(node, predicate.test),
          Self.text(of: node.pointee.children, trim: true, { $0.elementsEqual(expected) })
        {
          return true
        }
        child = node.pointee.next
      }
      return false
    }
  }

  // MARK: Names

  /// Whether the NUL-terminated `name` equals the NUL-terminated string at `offset`. Names
  /// mostly differ in the first byte; namespace URIs share long prefixes, which strcmp reads
  /// a vector at a time.
  @inline(__always)
  private func same(_ name: UnsafePointer<xmlChar>, _ offset: Int32) -> Bool {
    let expected = strings + Int(offset)
    guard name.pointee == expected.pointee else { return false }
    return strcmp(
      UnsafeRawPointer(name).assumingMemoryBound(to: CChar.self),
      UnsafeRawPointer(expected).assumingMemoryBound(to: CChar.self)) == 0
  }

  @inline(__always)
  private func matches(
    name: UnsafePointer<xmlChar>?, ns: UnsafeMutablePointer<xmlNs>?, _ test: XMLPath.NameTest
  ) -> Bool {
    if test.local != XMLPath.NameTest.any {
      guard let name, same(name, test.local) else { return false }
    }
    if test.uri != XMLPath.NameTest.any {
      guard let href = ns?.pointee.href else { return strings[Int(test.uri)] == 0 }
      return same(href, test.uri)
    }
    return true
  }

  @inline(__always)
  private func matches(_ element: Node, _ test: XMLPath.NameTest) -> Bool {
    matches(name: element.pointee.name, ns: element.pointee.ns, test)
  }

  private func attribute(of element: Node, _ test: XMLPath.NameTest) -> Attribute? {
    var property = element.pointee.properties
    while let found = property {
      if matches(name: found.pointee.name, ns: found.pointee.ns, test) { return found }
      property = found.pointee.next
    }
    return nil
  }

  // MARK: Values

  private static func isXMLSpace(_ c: UInt8) -> Bool {
    c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D
  }

  private static func trimmed(_ bytes: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
    var start = 0
    var end = bytes.count
    while start < end, isXMLSpace(bytes[start]) { start += 1 }
    while end > start, isXMLSpace(bytes[end - 1]) { end -= 1 }
    return UnsafeBufferPointer(rebasing: bytes[start..<end])
  }

  private static func isText(_ node: Node) -> Bool {
    node.pointee.type == XML_TEXT_NODE || node.pointee.type == XML_CDATA_SECTION_NODE
  }

  /// The content of a text or CDATA node.
  private static func content(_ node: Node) -> UnsafeBufferPointer<UInt8> {
    guard let content = node.pointee.content else {
      return UnsafeBufferPointer(start: nil, count: 0)
    }
    return UnsafeBufferPointer(start: content, count: Int(xmlStrlen(content)))
  }

  /// Appends the text of the nodes from `first` on and of their element descendants.
  private static func appendText(from first: Node?, to out: inout [UInt8]) {
    var child = first
    while let node = child {
      if isText(node) {
        out.append(contentsOf: content(node))
      } else if node.pointee.type == XML_ELEMENT_NODE {
        appendText(from: node.pointee.children, to: &out)
      }
      child = node.pointee.next
    }
  }

  /// Calls `body` with the text of the nodes from `first` on (an element's or attribute's
  /// children), optionally trimmed. The common single text child (`<a>text</a>`) is read in
  /// place; anything else is gathered first.
  private static func text<R>(
    of first: Node?, trim: Bool, _ body: (UnsafeBufferPointer<UInt8>) -> R
  ) -> R {
    if let first, first.pointee.next == nil, isText(first) {
      let bytes = content(first)
      return body(trim ? trimmed(bytes) : bytes)
    }
    guard first != nil else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
    var gathered: [UInt8] = []
    appendText(from: first, to: &gathered)
    return gathered.withUnsafeBufferPointer { body(trim ? trimmed($0) : $0) }
  }

  private static func value(ofElement element: Node) -> String {
    text(of: element.pointee.children, trim: true) { String(decoding: $0, as: UTF8.self) }
  }

  private static func value(ofAttribute attribute: Attribute) -> String {
    text(of: attribute.pointee.children, trim: false) { String(decoding: $0, as: UTF8.self) }
  }
}
