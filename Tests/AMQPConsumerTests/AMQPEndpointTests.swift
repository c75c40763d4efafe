import AMQPConsumer
import XCTest

final class AMQPEndpointTests: XCTestCase {
  func testFullURLIsParsedWithPercentEncodedVhost() throws {
    let e = try AMQPEndpoint(url: "amqp://bridge:s%40cret@rabbit.internal:5673/orders%2Fprod")
    XCTAssertEqual(e.host, "rabbit.internal")
    XCTAssertEqual(e.port, 5673)
    XCTAssertEqual(e.user, "bridge")
    XCTAssertEqual(e.password, "s@cret")
    XCTAssertEqual(e.vhost, "orders/prod")
    XCTAssertFalse(e.tls)
  }

  func testDefaultsAreGuestRootVhostAndTheSchemesPort() throws {
    let plain = try AMQPEndpoint(url: "amqp://localhost")
    XCTAssertEqual(plain.port, 5672)
    XCTAssertEqual(plain.vhost, "/")
    XCTAssertEqual(plain.user, "guest")
    let tls = try AMQPEndpoint(url: "amqps://rabbit.example/%2F")
    XCTAssertEqual(tls.port, 5671)
    XCTAssertTrue(tls.tls)
    XCTAssertEqual(tls.vhost, "/")
  }

  func testRedactedFormHidesThePassword() throws {
    let e = try AMQPEndpoint(url: "amqp://u:topsecret@h:1/%2F")
    XCTAssertFalse(e.redacted.contains("topsecret"))
    XCTAssertEqual(e.redacted, "amqp://u@h:1/%2F")
  }

  func testOtherSchemesAndMissingHostAreRejectedWithTheForm() {
    for url in ["http://h:5672/", "amqp://", "rabbit:5672"] {
      XCTAssertThrowsError(try AMQPEndpoint(url: url)) { error in
        XCTAssertTrue("\(error)".contains("amqp://host:5672"), "\(error)")
      }
    }
  }

  func testConnectingToANonListeningPortFailsWithTheAddress() {
    var e = try! AMQPEndpoint(url: "amqp://127.0.0.1:1/%2F")
    e.connectTimeout = 2
    XCTAssertThrowsError(try AMQPConnection(endpoint: e)) { error in
      XCTAssertTrue("\(error)".contains("127.0.0.1:1"), "\(error)")
    }
  }
}
