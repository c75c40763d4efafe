import LogParsers
import XCTest

/// `XMLPath` compiled against rule-style namespace maps and evaluated on bodies parsed by
/// `XMLBodyParser` (libxml2).
final class XMLPathTests: XCTestCase {
  private let parser = XMLBodyParser()

  private static let orders = """
    <?xml version="1.0"?>
    <Orders>
      <Order id="1" kind="std"><Number>A-1</Number><Status>new</Status></Order>
      <Order id="2" kind="rush">
        <Number>A-2</Number>
        <Status> done </Status>
        <Items><Item sku="x">Bolt</Item><Item sku="y">Nut</Item></Items>
      </Order>
    </Orders>
    """

  private static let soap = """
    <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
                   xmlns:m="urn:mes:jobs:v2" xmlns:o="urn:other">
      <soap:Body>
        <o:JobId>other</o:JobId>
        <m:JobId m:src="mes" src="plain">J-1</m:JobId>
      </soap:Body>
    </soap:Envelope>
    """

  private static let soapNamespaces = [
    "s": "http://schemas.xmlsoap.org/soap/envelope/", "mes": "urn:mes:jobs:v2",
  ]

  // MARK: Helpers

  private func value(
    _ xml: String, _ path: String, _ namespaces: [String: String] = [:],
    file: StaticString = #filePath, line: UInt = #line
  ) -> String? {
    let compiled: XMLPath
    do {
      compiled = try XMLPath(path, namespaces: namespaces)
    } catch {
      XCTFail("\(path): \(error)", file: file, line: line)
      return nil
    }
    do {
      return try parser.parse(xml).value(compiled)
    } catch {
      XCTFail("\(error)", file: file, line: line)
      return nil
    }
  }

  private func compileError(_ path: String, _ namespaces: [String: String] = [:])
    -> XMLPathError?
  {
    do {
      _ = try XMLPath(path, namespaces: namespaces)
      return nil
    } catch {
      return error
    }
  }

  private func parseError(_ xml: String) -> XMLBodyError? {
    do {
      _ = try parser.parse(xml)
      return nil
    } catch {
      return error
    }
  }

  private func parseError(_ bytes: [UInt8]) -> XMLBodyError? {
    bytes.withUnsafeBufferPointer { bytes -> XMLBodyError? in
      let result = Result { () throws(XMLBodyError) -> XMLParsed in try parser.parse(bytes) }
      guard case .failure(let error) = result else { return nil }
      return error
    }
  }

  private func assertCompileError(
    _ path: String, column: Int, _ fragment: String, _ namespaces: [String: String] = [:],
    file: StaticString = #filePath, line: UInt = #line
  ) {
    guard let error = compileError(path, namespaces) else {
      XCTFail("'\(path)' compiled", file: file, line: line)
      return
    }
    XCTAssertEqual(error.column, column, "\(path): \(error)", file: file, line: line)
    XCTAssertTrue(
      error.message.contains(fragment), "\(path): '\(error.message)' lacks '\(fragment)'",
      file: file, line: line)
  }

  // MARK: Elements and attributes

  func testElementValue() {
    XCTAssertEqual(value(Self.orders, "/Orders/Order/Number"), "A-1")
    XCTAssertEqual(value(Self.orders, "/Orders/Order/Status"), "new")
  }

  func testNestedPathSearchesLaterSiblings() {
    // The first Order has no Items: the path continues in the second.
    XCTAssertEqual(value(Self.orders, "/Orders/Order/Items/Item"), "Bolt")
  }

  func testAttributes() {
    XCTAssertEqual(value(Self.orders, "/Orders/Order/@kind"), "std")
    XCTAssertEqual(value(Self.orders, "/Orders/Order/Items/Item/@sku"), "x")
    XCTAssertEqual(value("<a v=\" x \"/>", "/a/@v"), " x ", "attribute values are not trimmed")
    XCTAssertEqual(value("<a v=\"1 &lt; 2 &amp; 3\"/>", "/a/@v"), "1 < 2 & 3")
    XCTAssertEqual(value("<a xml:lang=\"ru\"/>", "/a/@xml:lang"), "ru", "xml is predeclared")
  }

  func testMissingNodesAreNil() {
    XCTAssertNil(value(Self.orders, "/Orders/Missing"))
    XCTAssertNil(value(Self.orders, "/Orders/Order/@missing"))
    XCTAssertNil(value(Self.orders, "/Orders/Order/Number/Deeper"))
    XCTAssertNil(value(Self.orders, "/Wrong/Order/Number"), "the first step must match the root")
    XCTAssertNil(value(Self.orders, "/Order/Number"), "an absolute path starts at the root")
    XCTAssertNil(value(Self.orders, "//Missing"))
  }

  func testRootValueConcatenatesDescendantText() {
    XCTAssertEqual(value("<a> x <b>y</b> <c><![CDATA[z]]></c> </a>", "/a"), "x y z")
    XCTAssertEqual(value("<a>x<!-- note -->y<?pi data?></a>", "/a"), "xy")
  }

  // MARK: Namespaces

  func testPrefixedStepsMatchByURINotByDocumentPrefix() {
    XCTAssertEqual(value(Self.soap, "/s:Envelope/s:Body/mes:JobId", Self.soapNamespaces), "J-1")
    XCTAssertEqual(
      value(Self.soap, "/s:Envelope/s:Body/mes:JobId/@mes:src", Self.soapNamespaces), "mes")
    XCTAssertEqual(value(Self.soap, "/Envelope/Body/mes:*", Self.soapNamespaces), "J-1")
    XCTAssertEqual(
      value(Self.soap, "/Envelope/Body/*[@mes:src='mes']", Self.soapNamespaces), "J-1")
  }

  func testPrefixWithWrongURIDoesNotMatch() {
    let wrong = ["s": "http://schemas.xmlsoap.org/soap/envelope/", "mes": "urn:mes:jobs:v1"]
    XCTAssertNil(value(Self.soap, "/s:Envelope/s:Body/mes:JobId", wrong))
    XCTAssertNil(value(Self.soap, "//mes:JobId", wrong))
    XCTAssertNil(value(Self.soap, "/x:Envelope", ["x": "urn:mes:jobs:v2"]))
  }

  func testUnprefixedStepsMatchInAnyNamespace() {
    XCTAssertEqual(value(Self.soap, "/Envelope/Body/JobId"), "other", "first in document order")
    XCTAssertEqual(value(Self.soap, "/Envelope/Body/JobId[2]"), "J-1")
    XCTAssertEqual(value(Self.soap, "/Envelope/Body/JobId[2]/@src"), "mes", "first attribute")
  }

  func testPrefixBoundToEmptyURIMatchesNoNamespace() {
    let none = ["n": ""]
    XCTAssertEqual(value(Self.soap, "//JobId[2]/@n:src", none), "plain")
    XCTAssertNil(value(Self.soap, "/n:Envelope", none))
    XCTAssertEqual(value("<a><b>1</b></a>", "/n:a/n:b", none), "1")
  }

  func testDefaultNamespaceDocument() {
    let xml = """
      <Envelope xmlns="urn:default"><Body><JobId>7</JobId></Body></Envelope>
      """
    XCTAssertEqual(value(xml, "/Envelope/Body/JobId"), "7")
    XCTAssertEqual(value(xml, "/d:Envelope/d:Body/d:JobId", ["d": "urn:default"]), "7")
    XCTAssertNil(value(xml, "/d:Envelope", ["d": "urn:other"]))
    XCTAssertNil(value(xml, "/n:Envelope", ["n": ""]))
  }

  // MARK: // and *

  func testDescendantAnywhere() {
    XCTAssertEqual(value(Self.soap, "//JobId"), "other")
    XCTAssertEqual(value(Self.soap, "//mes:JobId", Self.soapNamespaces), "J-1")
    XCTAssertEqual(value(Self.orders, "//Item"), "Bolt")
    XCTAssertEqual(value(Self.orders, "//Orders/Order/Number"), "A-1", "// includes the root")
    XCTAssertEqual(value(Self.orders, "//Item/@sku"), "x")
  }

  func testDescendantInTheMiddle() {
    XCTAssertEqual(value(Self.soap, "/Envelope//JobId"), "other")
    XCTAssertEqual(value(Self.orders, "/Orders//Items/Item[2]"), "Nut")
    XCTAssertEqual(value(Self.orders, "/Orders/Order//Item"), "Bolt")
    XCTAssertNil(value(Self.orders, "/Orders//Orders"), "strictly below the context")
  }

  func testDescendantResultsComeInDocumentOrder() {
    // Both a's lead to a b; the inner a's b comes first in the document.
    let xml = "<a><x><a><b>1</b></a></x><b>2</b></a>"
    XCTAssertEqual(value(xml, "//a/b"), "1")
    XCTAssertEqual(value(xml, "/a//b"), "1")
    XCTAssertEqual(value(xml, "/a/b"), "2")
    XCTAssertEqual(value(xml, "//x//b"), "1")
  }

  func testSeveralDescendantStepsWithChildSteps() {
    let xml = "<r><a><b><x><a><c><d>1</d></c></a></x></b></a><a><c><d>2</d></c></a></r>"
    XCTAssertEqual(value(xml, "//a/b//c/d"), "1")
    XCTAssertEqual(value(xml, "//a/c/d"), "1", "the inner a has a c child")
    XCTAssertEqual(value(xml, "/r/a[2]//d"), "2")
    XCTAssertEqual(value(xml, "//b//a//d"), "1")
    XCTAssertNil(value(xml, "//x//b//d"))
    XCTAssertEqual(value(Self.orders, "//Order[@kind='rush']//Item[2]/@sku"), "y")
  }

  func testManyDescendantStepsOnDeepNestingStayLinear() {
    // 250 nested a's (libxml2 refuses more than 256 levels). Trying every combination of
    // ancestors for the four //a would take ~10^8 steps per element.
    let xml =
      String(repeating: "<a>", count: 250) + "<c>deep</c>"
      + String(repeating: "</a>", count: 250)
    XCTAssertEqual(value(xml, "//a//a//a//a//c"), "deep")
    XCTAssertNil(value(xml, "//a//a//a//a//x//c"))
    XCTAssertNil(value(xml, "//x//a//a//a//a//c"))
  }

  func testDescendantAttribute() {
    let xml = "<a id=\"r\"><b id=\"x\"><c id=\"y\"/></b></a>"
    XCTAssertEqual(value(xml, "//@id"), "r")
    XCTAssertEqual(value(xml, "/a//@id"), "r", "the element itself is included")
    XCTAssertEqual(value(xml, "/a/b//@id"), "x")
    XCTAssertEqual(value(xml, "//c/@id"), "y")
    XCTAssertNil(value(xml, "//@missing"))
  }

  func testWildcard() {
    XCTAssertEqual(value(Self.orders, "/Orders/*/Number"), "A-1")
    XCTAssertEqual(value(Self.orders, "/*/Order[2]/*"), "A-2")
    XCTAssertEqual(value(Self.orders, "/Orders/Order/*[2]"), "new")
    XCTAssertEqual(value(Self.orders, "/*"), value(Self.orders, "/Orders"))
    XCTAssertEqual(value(Self.orders, "/Orders/Order[2]/@*"), "2", "the first attribute")
    XCTAssertEqual(value(Self.soap, "//JobId/@mes:*", Self.soapNamespaces), "mes")
  }

  // MARK: Predicates

  func testPositionPredicate() {
    XCTAssertEqual(value(Self.orders, "/Orders/Order[2]/Number"), "A-2")
    XCTAssertEqual(value(Self.orders, "/Orders/Order[1]/Number"), "A-1")
    XCTAssertEqual(value(Self.orders, "/Orders/Order[2]/@id"), "2")
    XCTAssertNil(value(Self.orders, "/Orders/Order[3]"))
    XCTAssertEqual(value(Self.orders, "//Item[2]"), "Nut")
    XCTAssertEqual(value(Self.orders, "//Order[2]/Number"), "A-2")
    XCTAssertNil(value(Self.orders, "/Orders[2]"))
  }

  func testAttributeEqualityPredicate() {
    XCTAssertEqual(value(Self.orders, "/Orders/Order[@kind='rush']/Number"), "A-2")
    XCTAssertEqual(value(Self.orders, "/Orders/Order[@kind=\"rush\"]/Number"), "A-2")
    XCTAssertEqual(value(Self.orders, "/Orders/Order[ @kind = 'rush' ]/Number"), "A-2")
    XCTAssertEqual(value(Self.orders, "//Item[@sku='y']"), "Nut")
    XCTAssertEqual(value("<a><b k=\"x]'y\">1</b></a>", "/a/b[@k=\"x]'y\"]"), "1")
    XCTAssertNil(value(Self.orders, "/Orders/Order[@kind='RUSH']"), "exact comparison")
    XCTAssertNil(value(Self.orders, "/Orders/Order[@nope='rush']"))
  }

  func testChildEqualityPredicate() {
    XCTAssertEqual(value(Self.orders, "/Orders/Order[Number='A-2']/@id"), "2")
    XCTAssertEqual(value(Self.orders, "/Orders/Order[Status='done']/Number"), "A-2", "trimmed")
    XCTAssertEqual(value(Self.orders, "//Order[Status=\"new\"]/@kind"), "std")
    XCTAssertNil(value(Self.orders, "/Orders/Order[Status='gone']"))
  }

  func testPredicatesApplyInOrder() {
    // The position counts only the siblings that passed the predicate before it.
    XCTAssertEqual(value(Self.orders, "/Orders/Order[@kind='rush'][1]/Number"), "A-2")
    XCTAssertNil(value(Self.orders, "/Orders/Order[1][@kind='rush']"))
    XCTAssertEqual(value(Self.orders, "//Order[@kind='rush'][1]/Number"), "A-2")
    XCTAssertEqual(value(Self.orders, "//Items[1]/Item[@sku='y'][1]"), "Nut")
  }

  // MARK: Text

  func testTrailingTextStep() {
    XCTAssertEqual(value(Self.orders, "/Orders/Order/Number/text()"), "A-1")
    XCTAssertEqual(value(Self.orders, "//Item[2]/text()"), "Nut")
  }

  func testCDATA() {
    XCTAssertEqual(value("<a><b><![CDATA[x < y & z]]></b></a>", "/a/b"), "x < y & z")
    XCTAssertEqual(value("<a><b>pre <![CDATA[mid]]> post</b></a>", "/a/b"), "pre mid post")
    XCTAssertEqual(value("<a><b><![CDATA[  padded  ]]></b></a>", "/a/b"), "padded")
  }

  func testWhitespaceTrimming() {
    XCTAssertEqual(
      value("<a><b>\n\t  value with  inner  spaces \r\n</b></a>", "/a/b"),
      "value with  inner  spaces")
    XCTAssertEqual(value("<a><b>   </b></a>", "/a/b"), "")
    XCTAssertEqual(value("<a><b/></a>", "/a/b"), "", "an empty element matches with \"\"")
    XCTAssertEqual(value("<a><b>\u{A0}x\u{A0}</b></a>", "/a/b"), "\u{A0}x\u{A0}", "XML space only")
  }

  func testCyrillicText() {
    let xml = """
      <?xml version="1.0" encoding="windows-1251"?>
      <Заказ номер="№5"><Оператор>Иванов И.И.</Оператор><Статус>Готов</Статус></Заказ>
      """
    XCTAssertEqual(value(xml, "/Заказ/Оператор"), "Иванов И.И.")
    XCTAssertEqual(value(xml, "/Заказ/@номер"), "№5")
    XCTAssertEqual(value(xml, "//Заказ[Оператор='Иванов И.И.']/Статус"), "Готов")
  }

  func testByteOrderMarkAndProlog() {
    let xml = "\u{FEFF}<?xml version=\"1.0\" encoding=\"koi8-r\" standalone=\"yes\"?><a>Ё</a>"
    XCTAssertEqual(value(xml, "/a"), "Ё")
  }

  func testWindows1251BodyTranscodedFirst() throws {
    // "Привет" in windows-1251; the prolog's encoding is ignored because the bytes handed to
    // the parser are already UTF-8.
    let body =
      Array("<?xml version=\"1.0\" encoding=\"windows-1251\"?><m><t>".utf8)
      + [0xCF, 0xF0, 0xE8, 0xE2, 0xE5, 0xF2] + Array("</t></m>".utf8)
    let decoder = try CharsetDecoder(charset: "windows-1251")
    var utf8: [UInt8] = []
    XCTAssertEqual(body.withUnsafeBufferPointer { decoder.decode($0, into: &utf8) }, 0)
    let path = try XMLPath("/m/t", namespaces: [:])
    let parsed = try utf8.withUnsafeBufferPointer { try parser.parse($0) }
    XCTAssertEqual(parsed.value(path), "Привет")
  }

  // MARK: Parsing

  func testMalformedXMLReportsLine() throws {
    let error = try XCTUnwrap(parseError("<Jobs>\n  <Job>\n</Jobs>\n"))
    XCTAssertEqual(error.line, 3)
    XCTAssertTrue(error.message.contains("Opening and ending tag mismatch: Job"), error.message)
    XCTAssertTrue(
      error.description.hasPrefix("not well-formed XML: line 3: Opening and ending tag mismatch"),
      error.description)
    // The parser is usable after a failure.
    XCTAssertEqual(value("<a>ok</a>", "/a"), "ok")
  }

  func testOtherParseErrors() throws {
    XCTAssertEqual(try XCTUnwrap(parseError("")).message, "the body is empty")
    let notXML = try XCTUnwrap(parseError("job 42 finished"))
    XCTAssertEqual(notXML.line, 1)
    XCTAssertTrue(notXML.message.contains("Start tag expected"), notXML.message)
    let truncated = try XCTUnwrap(parseError("<Jobs>\n  <Job>J-1</Job>\n"))
    XCTAssertTrue(truncated.message.contains("Premature end of data in tag Jobs"), "\(truncated)")
    let undeclaredEntity = try XCTUnwrap(parseError("<a>\n&nbsp;</a>"))
    XCTAssertEqual(undeclaredEntity.line, 2)
    XCTAssertTrue(undeclaredEntity.message.contains("nbsp"), undeclaredEntity.message)
    let invalidUTF8 = [UInt8]("<a>".utf8) + [0xFF, 0xFE] + Array("</a>".utf8)
    let error = try XCTUnwrap(parseError(invalidUTF8))
    XCTAssertTrue(error.message.contains("not proper UTF-8"), error.message)
    XCTAssertFalse(error.message.contains("\n"), error.message)
  }

  func testExternalEntitiesAreNotExpanded() throws {
    let xxe = """
      <?xml version="1.0"?>
      <!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>
      """
    let parsed = try parser.parse(xxe)
    let text = try XCTUnwrap(parsed.value(XMLPath("/x", namespaces: [:])))
    XCTAssertFalse(text.contains("root:"))
    XCTAssertEqual(text, "")
    // No external DTD is loaded (/etc/passwd is not a DTD; loading it would fail the parse).
    let dtd = "<!DOCTYPE x SYSTEM \"file:///etc/passwd\"><x>a</x>"
    XCTAssertEqual(value(dtd, "/x"), "a")
  }

  func testDeclaredEntitiesAreNotSubstituted() {
    let xml = "<!DOCTYPE x [<!ENTITY e \"hello\">]><x a=\"1&e;2\">a&e;b</x>"
    XCTAssertEqual(value(xml, "/x"), "ab")
    XCTAssertEqual(value(xml, "/x/@a"), "12")
  }

  func testBillionLaughsIsRejected() throws {
    var xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n"
    for level in 1...9 {
      let previous = level == 1 ? "lol" : "lol\(level - 1)"
      xml += "<!ENTITY lol\(level) \"\(String(repeating: "&\(previous);", count: 10))\">\n"
    }
    xml += "]>\n<lolz>&lol9;</lolz>"
    let error = try XCTUnwrap(parseError(xml))
    XCTAssertTrue(error.message.contains("entity"), error.message)
  }

  func testLargeBody() throws {
    var xml = "<Batch xmlns=\"urn:mes\">"
    for n in 0..<20_000 { xml += "<Item sku=\"s\(n)\"><Qty>\(n % 7)</Qty></Item>" }
    xml += "</Batch>"
    XCTAssertGreaterThan(xml.utf8.count, 500_000)
    XCTAssertEqual(value(xml, "//Item[@sku='s19999']/Qty"), "\(19_999 % 7)")
    XCTAssertEqual(value(xml, "/Batch/Item[12345]/@sku"), "s12344")
    XCTAssertNil(value(xml, "/Batch/Item[20001]"))
  }

  func testDocumentsOutliveLaterParses() throws {
    let path = try XMLPath("/a/b", namespaces: [:])
    let first = try parser.parse("<a><b>1</b></a>")
    let second = try parser.parse("<a><b>2</b></a>")
    XCTAssertNotNil(parseError("<broken"))
    XCTAssertEqual(first.value(path), "1")
    XCTAssertEqual(second.value(path), "2")
  }

  func testManyDistinctNamesRenewTheContext() throws {
    // More distinct names than the context's dictionary keeps; every parse still works.
    let path = try XMLPath("/r/*", namespaces: [:])
    for n in 0..<30_000 {
      let name = "e\(n)"
      let parsed = try parser.parse("<r><\(name) \(name)x=\"1\">\(n)</\(name)></r>")
      XCTAssertEqual(parsed.value(path), "\(n)")
    }
  }

  // MARK: Compile errors

  func testPathProperties() throws {
    let path = try XMLPath("/s:Envelope//mes:JobId/text()", namespaces: Self.soapNamespaces)
    XCTAssertEqual(path.text, "/s:Envelope//mes:JobId/text()")
    XCTAssertEqual(path.description, path.text)
    XCTAssertEqual(
      try XMLPath("/a/b", namespaces: [:]), try XMLPath("/a/b", namespaces: ["m": "urn:m"]))
  }

  func testCompileErrorsNameTheColumn() {
    assertCompileError("", column: 1, "empty path")
    assertCompileError("Orders/Order", column: 1, "a path starts with '/'")
    assertCompileError("/a/", column: 4, "empty step")
    assertCompileError("/a//", column: 5, "empty step")
    assertCompileError("///a", column: 3, "empty step")
    assertCompileError("/", column: 2, "empty step")
    assertCompileError("/a/@b/c", column: 4, "'@attr' must be the last step")
    assertCompileError("/a/@b/text()", column: 4, "'@attr' must be the last step")
    assertCompileError(
      "/a/m:b", column: 4,
      "unknown namespace prefix 'm': declare it under the rule's namespaces")
    assertCompileError("/a/@m:b", column: 5, "unknown namespace prefix 'm'")
    assertCompileError("/a[@m:b='1']", column: 5, "unknown namespace prefix 'm'")
    assertCompileError("/Заказ/m:x", column: 8, "unknown namespace prefix 'm'")
    assertCompileError("/a/m:", column: 6, "missing local name", ["m": "urn:m"])
    assertCompileError("/a[1", column: 3, "unterminated predicate")
    assertCompileError("/a[@b='x'", column: 3, "unterminated predicate")
    assertCompileError("/a[b='x'", column: 3, "unterminated predicate")
    assertCompileError("/a[", column: 3, "unterminated predicate")
    assertCompileError("/a[@b='x]", column: 7, "unterminated string")
    assertCompileError("/a[0]", column: 4, "positions start at 1")
    assertCompileError("/a[]", column: 3, "empty predicate")
    assertCompileError("/a[@b]", column: 6, "expected '='")
    assertCompileError("/a[@b=x]", column: 7, "quote the value")
    assertCompileError("/a[1x]", column: 5, "expected ']'")
    assertCompileError("/a[$x]", column: 4, "unexpected '$' in predicate")
    assertCompileError("/a/@b[1]", column: 6, "an attribute step cannot have predicates")
    assertCompileError("/@b", column: 2, "'@attr' needs an element step before it")
    assertCompileError("/a/@", column: 5, "'@' needs an attribute name")
    assertCompileError("/a/@=", column: 5, "'@' needs an attribute name")
    assertCompileError("/a/text()/b", column: 4, "'text()' must be the last step")
    assertCompileError("/a/text()[1]", column: 4, "'text()' must be the last step")
    assertCompileError("/text()", column: 2, "'text()' needs an element step before it")
    assertCompileError("/a//text()", column: 5, "'//text()' is not supported")
    assertCompileError("/a/node()", column: 4, "unsupported function 'node()'")
    assertCompileError("/a/child::b", column: 4, "axes such as 'child::' are not supported")
    assertCompileError("/a/..", column: 4, "'.' and '..' steps are not supported")
    assertCompileError("/a/*:b", column: 4, "'*:name' is not supported")
    assertCompileError("/a/b c", column: 5, "unexpected space")
    assertCompileError("/a/1b", column: 4, "unexpected '1'")
    assertCompileError("/a[@b='x']]", column: 11, "unexpected ']'")
  }

  func testCompileErrorDescription() throws {
    let error = try XCTUnwrap(compileError("/m:a"))
    XCTAssertEqual(
      error.description,
      "column 2: unknown namespace prefix 'm': declare it under the rule's namespaces")
  }
}
