import CRabbitMQ
import Foundation

/// One AMQP 0-9-1 connection with one channel, on rabbitmq-c. Owns every C resource: the
/// connection state is destroyed in `close()`/`deinit`, envelopes are copied into Swift values
/// and released before `nextDelivery` returns. Not thread-safe: one dedicated thread drives it
/// (heartbeats are serviced while it waits in `nextDelivery`).
public final class AMQPConnection {
  public let endpoint: AMQPEndpoint
  private var state: amqp_connection_state_t?
  private let channel: amqp_channel_t = 1
  /// With publisher confirms on: the sequence number of the last message published.
  private var published: UInt64 = 0
  private var confirming = false

  /// Connects, logs in (PLAIN, with the consumer_cancel_notify capability) and opens a channel.
  public init(endpoint: AMQPEndpoint) throws(AMQPError) {
    self.endpoint = endpoint
    guard let conn = amqp_new_connection() else { throw .connection("out of memory") }
    state = conn
    let socket: OpaquePointer?
    if endpoint.tls {
      socket = amqp_ssl_socket_new(conn)
      guard let socket else { throw .connection("cannot create a TLS socket") }
      if let ca = endpoint.caFile {
        if amqp_ssl_socket_set_cacert(socket, ca) != AMQP_STATUS_OK.rawValue {
          close()
          throw .tls("cannot read the CA file \(ca)")
        }
      }
      if let cert = endpoint.certFile, let key = endpoint.keyFile {
        if amqp_ssl_socket_set_key(socket, cert, key) != AMQP_STATUS_OK.rawValue {
          close()
          throw .tls("cannot read the client certificate \(cert) or key \(key)")
        }
      }
    } else {
      socket = amqp_tcp_socket_new(conn)
    }
    guard let socket else { throw .connection("cannot create a socket") }
    var timeout = timeval(tv_sec: Int(endpoint.connectTimeout), tv_usec: 0)
    let opened = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout)
    if opened != AMQP_STATUS_OK.rawValue {
      let reason = Self.statusText(opened)
      close()
      throw .connection("cannot connect to \(endpoint.host):\(endpoint.port): \(reason)")
    }
    var rpc = timeval(tv_sec: Int(endpoint.rpcTimeout), tv_usec: 0)
    amqp_set_rpc_timeout(conn, &rpc)
    amqp_set_handshake_timeout(conn, &rpc)
    let login = tb_amqp_login(
      conn, endpoint.vhost, 131_072, Int32(endpoint.heartbeatSeconds), endpoint.user,
      endpoint.password)
    if var problem = Self.describe(login) {
      close()
      if endpoint.tls && endpoint.certFile == nil && problem.contains("SSL") {
        problem +=
          " (a broker with fail_if_no_peer_cert wants a client certificate: amqp.tls.cert_file and key_file)"
      }
      throw .login("login to \(endpoint.redacted) failed: \(problem)")
    }
    amqp_channel_open(conn, channel)
    if let problem = Self.describe(amqp_get_rpc_reply(conn)) {
      close()
      throw .channel("cannot open a channel: \(problem)")
    }
  }

  deinit { close() }

  /// Closes the channel and the connection (politely when possible) and frees everything.
  public func close() {
    guard let conn = state else { return }
    state = nil
    _ = amqp_channel_close(conn, channel, Int32(AMQP_REPLY_SUCCESS))
    _ = amqp_connection_close(conn, Int32(AMQP_REPLY_SUCCESS))
    amqp_destroy_connection(conn)
  }

  /// Declares `queue` (durable), or with `passive` only checks that it exists (queues the
  /// services own). Returns the number of messages ready in it.
  @discardableResult
  public func declareQueue(_ queue: String, passive: Bool, arguments: [String: String] = [:])
    throws(AMQPError) -> Int
  {
    let conn = try live()
    var result: UnsafeMutablePointer<amqp_queue_declare_ok_t>?
    queue.withCString { q in
      result = amqp_queue_declare(
        conn, channel, amqp_cstring_bytes(q), passive ? 1 : 0, 1, 0, 0, tb_empty_table())
    }
    if let problem = Self.describe(amqp_get_rpc_reply(conn)) {
      throw .channel("queue '\(queue)': \(problem)")
    }
    return Int(result?.pointee.message_count ?? 0)
  }

  public func bindQueue(_ queue: String, exchange: String, routingKey: String) throws(AMQPError) {
    let conn = try live()
    queue.withCString { q in
      exchange.withCString { e in
        routingKey.withCString { r in
          _ = amqp_queue_bind(
            conn, channel, amqp_cstring_bytes(q), amqp_cstring_bytes(e), amqp_cstring_bytes(r),
            tb_empty_table())
        }
      }
    }
    if let problem = Self.describe(amqp_get_rpc_reply(conn)) {
      throw .channel(
        "binding queue '\(queue)' to exchange '\(exchange)' with '\(routingKey)': \(problem)")
    }
  }

  /// At most `prefetch` unacknowledged deliveries in flight.
  public func setPrefetch(_ prefetch: Int) throws(AMQPError) {
    let conn = try live()
    amqp_basic_qos(conn, channel, 0, UInt16(clamping: prefetch), 0)
    if let problem = Self.describe(amqp_get_rpc_reply(conn)) {
      throw .channel("basic.qos: \(problem)")
    }
  }

  /// Starts consuming `queue` with manual acknowledgements; `arguments` go with basic.consume
  /// (`x-stream-offset` for a stream queue).
  public func consume(_ queue: String, arguments: [(String, AMQPArgument)] = []) throws(AMQPError) {
    let conn = try live()
    let strings = CStrings()
    var entries = arguments.map { a -> amqp_table_entry_t in
      var e = amqp_table_entry_t()
      e.key = strings.bytes(a.0)
      switch a.1 {
      case .string(let s):
        e.value.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
        e.value.value.bytes = strings.bytes(s)
      case .timestamp(let t):
        e.value.kind = UInt8(AMQP_FIELD_KIND_TIMESTAMP.rawValue)
        e.value.value.u64 = t
      case .int(let i):
        e.value.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
        e.value.value.i64 = i
      }
      return e
    }
    entries.withUnsafeMutableBufferPointer { ebuf in
      let table = amqp_table_t(num_entries: Int32(ebuf.count), entries: ebuf.baseAddress)
      _ = amqp_basic_consume(
        conn, channel, strings.bytes(queue), amqp_bytes_t(len: 0, bytes: nil), 0, 0, 0, table)
    }
    if let problem = Self.describe(amqp_get_rpc_reply(conn)) {
      throw .channel("cannot consume queue '\(queue)': \(problem)")
    }
  }

  /// The next delivery, or nil when none came within `timeout` seconds.
  public func nextDelivery(timeout: Double) throws(AMQPError) -> AMQPDelivery? {
    let conn = try live()
    amqp_maybe_release_buffers(conn)
    var envelope = amqp_envelope_t()
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    let reply = amqp_consume_message(conn, &envelope, &tv, 0)
    if reply.reply_type == AMQP_RESPONSE_NORMAL {
      defer { amqp_destroy_envelope(&envelope) }
      return AMQPDelivery(envelope)
    }
    if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION {
      if reply.library_error == AMQP_STATUS_TIMEOUT.rawValue { return nil }
      if reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue {
        try handleOtherFrame(conn)
        return nil
      }
      throw .connection(
        "connection to \(endpoint.redacted) lost: \(Self.statusText(reply.library_error))")
    }
    throw .connection(
      "connection to \(endpoint.redacted) lost: \(Self.describe(reply) ?? "unknown")")
  }

  /// Acknowledges `tag` (and with `multiple`, every earlier unacknowledged delivery).
  public func ack(_ tag: UInt64, multiple: Bool) throws(AMQPError) {
    let conn = try live()
    let status = amqp_basic_ack(conn, channel, tag, multiple ? 1 : 0)
    if status != AMQP_STATUS_OK.rawValue {
      throw .connection("basic.ack failed: \(Self.statusText(status))")
    }
  }

  /// Publishes a persistent message (the dead-letter path), keeping the original's properties
  /// (`message_id`, `type`, `timestamp`, …) and adding `headers`.
  public func publish(
    exchange: String, routingKey: String, body: [UInt8], like original: AMQPDelivery,
    headers: [(String, String)]
  ) throws(AMQPError) {
    let conn = try live()
    let strings = CStrings()
    var entries = headers.map { h -> amqp_table_entry_t in
      var e = amqp_table_entry_t()
      e.key = strings.bytes(h.0)
      e.value.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
      e.value.value.bytes = strings.bytes(h.1)
      return e
    }
    var props = amqp_basic_properties_t()
    props._flags = UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG)
    props.delivery_mode = 2
    func set(
      _ value: String?, _ flag: Int32,
      _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>
    ) {
      guard let value else { return }
      props._flags |= UInt32(flag)
      props[keyPath: field] = strings.bytes(value)
    }
    set(original.contentType, AMQP_BASIC_CONTENT_TYPE_FLAG, \.content_type)
    set(original.contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, \.content_encoding)
    set(original.messageID, AMQP_BASIC_MESSAGE_ID_FLAG, \.message_id)
    set(original.correlationID, AMQP_BASIC_CORRELATION_ID_FLAG, \.correlation_id)
    set(original.type, AMQP_BASIC_TYPE_FLAG, \.type)
    set(original.appID, AMQP_BASIC_APP_ID_FLAG, \.app_id)
    if let t = original.timestamp {
      props._flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
      props.timestamp = t
    }
    let status = entries.withUnsafeMutableBufferPointer { ebuf -> Int32 in
      props.headers = amqp_table_t(num_entries: Int32(ebuf.count), entries: ebuf.baseAddress)
      return body.withUnsafeBytes { b in
        amqp_basic_publish(
          conn, channel, strings.bytes(exchange), strings.bytes(routingKey), 0, 0, &props,
          tb_bytes(b.baseAddress, b.count))
      }
    }
    if status != AMQP_STATUS_OK.rawValue {
      throw .connection(
        "publishing to '\(exchange)'/'\(routingKey)' failed: \(Self.statusText(status))")
    }
    if confirming {
      published += 1
      try waitForConfirm(conn, published)
    }
  }

  /// Puts the channel into confirm mode: from now on `publish` returns only once the broker has
  /// taken the message (basic.ack), and throws when it refuses it (basic.nack). Use it on a
  /// connection that only publishes: the wait reads frames that deliveries would come in.
  public func enableConfirms() throws(AMQPError) {
    let conn = try live()
    amqp_confirm_select(conn, channel)
    if let problem = Self.describe(amqp_get_rpc_reply(conn)) {
      throw .channel("confirm.select: \(problem)")
    }
    confirming = true
    published = 0
  }

  /// Waits for the broker's basic.ack of publish number `sequence`.
  private func waitForConfirm(_ conn: amqp_connection_state_t, _ sequence: UInt64)
    throws(AMQPError)
  {
    let deadline = Date().addingTimeInterval(Double(endpoint.rpcTimeout))
    while true {
      var frame = amqp_frame_t()
      let left = max(0.001, deadline.timeIntervalSinceNow)
      var tv = timeval(tv_sec: Int(left), tv_usec: Int((left - Double(Int(left))) * 1e6))
      let status = amqp_simple_wait_frame_noblock(conn, &frame, &tv)
      if status == AMQP_STATUS_TIMEOUT.rawValue {
        throw .connection(
          "no publisher confirm from \(endpoint.redacted) within \(endpoint.rpcTimeout) s")
      }
      guard status == AMQP_STATUS_OK.rawValue else {
        throw .connection("waiting for a publisher confirm: \(Self.statusText(status))")
      }
      guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { continue }
      switch frame.payload.method.id {
      case Method.basicAck:
        let ack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self)
          .pointee
        if ack.delivery_tag == sequence || (ack.multiple != 0 && ack.delivery_tag >= sequence) {
          return
        }
      case Method.basicNack:
        throw .channel("the broker refused the message (basic.nack)")
      default:
        if let closed = Self.closeError(frame.payload.method) { throw closed }
      }
    }
  }

  /// C copies of strings that live as long as this object (for one publish).
  private final class CStrings {
    private var pointers: [UnsafeMutablePointer<CChar>] = []
    func bytes(_ s: String) -> amqp_bytes_t {
      guard let p = strdup(s) else { return amqp_bytes_t(len: 0, bytes: nil) }
      pointers.append(p)
      return tb_bytes(p, strlen(p))
    }
    deinit {
      for p in pointers { free(p) }
    }
  }

  // MARK: - Internals

  private func live() throws(AMQPError) -> amqp_connection_state_t {
    guard let state else { throw .connection("the connection is closed") }
    return state
  }

  /// A frame other than a delivery: a cancelled consumer, a closed channel or connection.
  private func handleOtherFrame(_ conn: amqp_connection_state_t) throws(AMQPError) {
    var frame = amqp_frame_t()
    let status = amqp_simple_wait_frame(conn, &frame)
    if status != AMQP_STATUS_OK.rawValue {
      throw .connection("connection lost: \(Self.statusText(status))")
    }
    guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return }
    switch frame.payload.method.id {
    case Method.basicCancel:
      throw .cancelled("the broker cancelled the consumer (the queue was deleted?)")
    case Method.channelClose, Method.connectionClose:
      if let closed = Self.closeError(frame.payload.method) { throw closed }
    case Method.basicReturn:
      var message = amqp_message_t()
      _ = amqp_read_message(conn, frame.channel, &message, 0)
      amqp_destroy_message(&message)
    default:
      return
    }
  }

  enum Method {
    static let basicCancel: amqp_method_number_t = 0x003C_001E
    static let basicReturn: amqp_method_number_t = 0x003C_0032
    static let basicAck: amqp_method_number_t = 0x003C_0050
    static let basicNack: amqp_method_number_t = 0x003C_0078
    static let channelClose: amqp_method_number_t = 0x0014_0028
    static let connectionClose: amqp_method_number_t = 0x000A_0032
  }

  /// The error a channel.close or connection.close from the broker means; nil for other methods.
  static func closeError(_ method: amqp_method_t) -> AMQPError? {
    switch method.id {
    case Method.channelClose:
      let c = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
      return .channel("the broker closed the channel: \(c.reply_code) \(string(c.reply_text))")
    case Method.connectionClose:
      let c = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
      return .connection(
        "the broker closed the connection: \(c.reply_code) \(string(c.reply_text))")
    default:
      return nil
    }
  }

  static func string(_ bytes: amqp_bytes_t) -> String {
    guard bytes.len > 0, let p = bytes.bytes else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: bytes.len), as: UTF8.self)
  }

  static func statusText(_ status: Int32) -> String {
    String(cString: amqp_error_string2(status))
  }

  /// nil for a normal reply, else what went wrong.
  static func describe(_ reply: amqp_rpc_reply_t) -> String? {
    switch reply.reply_type {
    case AMQP_RESPONSE_NORMAL: return nil
    case AMQP_RESPONSE_NONE: return "no reply (missing RPC reply type)"
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: return statusText(reply.library_error)
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      return closeError(reply.reply)?.description ?? "server error (method \(reply.reply.id))"
    default: return "unknown reply"
    }
  }
}

/// A value in an AMQP arguments table.
public enum AMQPArgument: Sendable, Equatable {
  case string(String)
  /// Seconds since the epoch.
  case timestamp(UInt64)
  case int(Int64)
}

/// What went wrong with the broker; every case says where and why.
public enum AMQPError: Error, CustomStringConvertible, Equatable {
  case connection(String)
  case login(String)
  case tls(String)
  case channel(String)
  case cancelled(String)
  public var description: String {
    switch self {
    case .connection(let s), .login(let s), .tls(let s), .channel(let s), .cancelled(let s):
      return s
    }
  }
}
