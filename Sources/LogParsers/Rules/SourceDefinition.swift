/// A log source as the rules and readers need it: validated, compiled, immutable.
public struct SourceDefinition: Sendable {
  public var name: String
  /// The real system that writes the log: `service.name` of its spans.
  public var service: String
  public var paths: [String]
  public var decoder: CharsetDecoder
  public var zone: LocalZone
  /// The first line of a multiline record matches this; other lines continue the record.
  public var multilineStart: CompiledPattern?
  /// Records longer than this are cut to it and counted.
  public var maxLineBytes: Int

  public init(
    name: String, service: String, paths: [String], decoder: CharsetDecoder, zone: LocalZone,
    multilineStart: CompiledPattern? = nil, maxLineBytes: Int = 65536
  ) {
    self.name = name
    self.service = service
    self.paths = paths
    self.decoder = decoder
    self.zone = zone
    self.multilineStart = multilineStart
    self.maxLineBytes = maxLineBytes
  }
}
