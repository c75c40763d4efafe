/// An OpenTelemetry attribute: a key and a scalar value.
public struct Attribute: Sendable, Equatable, Codable {
  public var key: String
  public var value: AttributeValue
  public init(_ key: String, _ value: AttributeValue) {
    self.key = key
    self.value = value
  }
  public init(_ key: String, _ value: String) {
    self.key = key
    self.value = .string(value)
  }
}

public enum AttributeValue: Sendable, Equatable, Codable {
  case string(String)
  case int(Int64)
  case double(Double)
  case bool(Bool)
}
