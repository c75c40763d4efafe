import Foundation

/// Where and how to connect: parsed from an `amqp://` or `amqps://` URL, with the
/// credentials kept out of the URL (and out of the command line) when they come from the
/// environment or a file.
public struct AMQPEndpoint: Sendable, Equatable {
  public var host: String
  public var port: Int
  public var vhost: String
  public var user: String
  public var password: String
  public var tls: Bool
  public var caFile: String?
  public var certFile: String?
  public var keyFile: String?
  public var heartbeatSeconds = 30
  public var connectTimeout = 10
  public var rpcTimeout = 30

  /// Parses `amqp[s]://[user[:password]@]host[:port][/vhost]` (vhost percent-encoded, `%2F`
  /// for `/`; an empty path means `/`). Defaults: port 5672 (5671 for amqps), user and
  /// password `guest`.
  public init(url: String) throws(AMQPEndpointError) {
    guard let components = URLComponents(string: url), let scheme = components.scheme,
      scheme == "amqp" || scheme == "amqps", let host = components.host, !host.isEmpty
    else { throw .invalid(url) }
    tls = scheme == "amqps"
    self.host = host
    port = components.port ?? (tls ? 5671 : 5672)
    user = components.user.flatMap { $0.removingPercentEncoding } ?? "guest"
    password = components.password.flatMap { $0.removingPercentEncoding } ?? "guest"
    let path = components.percentEncodedPath
    if path.isEmpty || path == "/" {
      vhost = "/"
    } else {
      vhost = String(path.dropFirst()).removingPercentEncoding ?? String(path.dropFirst())
    }
  }

  /// The URL without the password, for messages.
  public var redacted: String {
    "\(tls ? "amqps" : "amqp")://\(user)@\(host):\(port)/\(vhost == "/" ? "%2F" : vhost)"
  }
}

public enum AMQPEndpointError: Error, CustomStringConvertible, Equatable {
  case invalid(String)
  public var description: String {
    switch self {
    case .invalid(let url):
      return "'\(url)' is not an AMQP URL; write amqp://host:5672/%2F or amqps://host:5671/vhost"
    }
  }
}
