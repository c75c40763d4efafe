import CRabbitMQ

/// A message as delivered, copied out of rabbitmq-c's buffers.
public struct AMQPDelivery: Sendable {
  public var deliveryTag: UInt64
  public var redelivered: Bool
  public var exchange: String
  public var routingKey: String
  public var body: [UInt8]
  public var contentType: String?
  public var contentEncoding: String?
  public var messageID: String?
  public var correlationID: String?
  /// The AMQP `timestamp` property: seconds since the Unix epoch.
  public var timestamp: UInt64?
  public var type: String?
  public var appID: String?
  public var userID: String?
  /// Header values as text (numbers and booleans printed; nested tables and arrays skipped).
  public var headers: [(String, String)]

  public init(
    deliveryTag: UInt64, redelivered: Bool = false, exchange: String = "", routingKey: String = "",
    body: [UInt8], contentType: String? = nil, contentEncoding: String? = nil,
    messageID: String? = nil,
    correlationID: String? = nil, timestamp: UInt64? = nil, type: String? = nil,
    appID: String? = nil,
    userID: String? = nil, headers: [(String, String)] = []
  ) {
    self.deliveryTag = deliveryTag
    self.redelivered = redelivered
    self.exchange = exchange
    self.routingKey = routingKey
    self.body = body
    self.contentType = contentType
    self.contentEncoding = contentEncoding
    self.messageID = messageID
    self.correlationID = correlationID
    self.timestamp = timestamp
    self.type = type
    self.appID = appID
    self.userID = userID
    self.headers = headers
  }

  init(_ envelope: amqp_envelope_t) {
    let p = envelope.message.properties
    func has(_ flag: Int32) -> Bool { p._flags & UInt32(flag) != 0 }
    func text(_ b: amqp_bytes_t) -> String { AMQPConnection.string(b) }
    var headers: [(String, String)] = []
    if has(AMQP_BASIC_HEADERS_FLAG), let entries = p.headers.entries {
      for i in 0..<Int(p.headers.num_entries) {
        let e = entries[i]
        if let v = Self.text(e.value) { headers.append((text(e.key), v)) }
      }
    }
    let body = envelope.message.body
    self.init(
      deliveryTag: envelope.delivery_tag, redelivered: envelope.redelivered != 0,
      exchange: text(envelope.exchange), routingKey: text(envelope.routing_key),
      body: body.len > 0 ? Array(UnsafeRawBufferPointer(start: body.bytes, count: body.len)) : [],
      contentType: has(AMQP_BASIC_CONTENT_TYPE_FLAG) ? text(p.content_type) : nil,
      contentEncoding: has(AMQP_BASIC_CONTENT_ENCODING_FLAG) ? text(p.content_encoding) : nil,
      messageID: has(AMQP_BASIC_MESSAGE_ID_FLAG) ? text(p.message_id) : nil,
      correlationID: has(AMQP_BASIC_CORRELATION_ID_FLAG) ? text(p.correlation_id) : nil,
      timestamp: has(AMQP_BASIC_TIMESTAMP_FLAG) ? p.timestamp : nil,
      type: has(AMQP_BASIC_TYPE_FLAG) ? text(p.type) : nil,
      appID: has(AMQP_BASIC_APP_ID_FLAG) ? text(p.app_id) : nil,
      userID: has(AMQP_BASIC_USER_ID_FLAG) ? text(p.user_id) : nil, headers: headers)
  }

  /// A scalar header value as text.
  static func text(_ v: amqp_field_value_t) -> String? {
    switch Int(v.kind) {
    case Int(AMQP_FIELD_KIND_UTF8.rawValue), Int(AMQP_FIELD_KIND_BYTES.rawValue):
      return AMQPConnection.string(v.value.bytes)
    case Int(AMQP_FIELD_KIND_BOOLEAN.rawValue): return v.value.boolean != 0 ? "true" : "false"
    case Int(AMQP_FIELD_KIND_I8.rawValue): return "\(v.value.i8)"
    case Int(AMQP_FIELD_KIND_U8.rawValue): return "\(v.value.u8)"
    case Int(AMQP_FIELD_KIND_I16.rawValue): return "\(v.value.i16)"
    case Int(AMQP_FIELD_KIND_U16.rawValue): return "\(v.value.u16)"
    case Int(AMQP_FIELD_KIND_I32.rawValue): return "\(v.value.i32)"
    case Int(AMQP_FIELD_KIND_U32.rawValue): return "\(v.value.u32)"
    case Int(AMQP_FIELD_KIND_I64.rawValue): return "\(v.value.i64)"
    case Int(AMQP_FIELD_KIND_U64.rawValue), Int(AMQP_FIELD_KIND_TIMESTAMP.rawValue):
      return "\(v.value.u64)"
    case Int(AMQP_FIELD_KIND_F32.rawValue): return "\(v.value.f32)"
    case Int(AMQP_FIELD_KIND_F64.rawValue): return "\(v.value.f64)"
    default: return nil
    }
  }
}
