import Foundation
import TraceBridgeCore

/// What a record became.
public enum RuleOutcome {
    /// `rule` is the index of the rule in the rule set.
    case matched(rule: Int, event: OrderEvent)
    /// A rule matched but the record cannot become an event (no time, no order id).
    case rejected(rule: Int, reason: RejectReason)
    case unmatched
}

/// Evaluates the rules of one source against records, on one thread. Owns the PCRE2 match
/// data of every pattern it uses and scratch buffers, so evaluation allocates only for the
/// event it returns.
public final class RuleEvaluator {
    public let source: SourceDefinition
    private let rules: [CompiledRule]
    private let ruleIndices: [Int]
    private let matchers: [PatternMatcher?]
    private let whereMatchers: [[PatternMatcher]]
    private var values: [[String?]]
    private var json: Any?? = nil
    private var logfmt: [Substring: Substring]? = nil

    /// `rules` are the source's rules in order; `ruleIndices` their indices in the rule set.
    public init(source: SourceDefinition, rules: [CompiledRule], ruleIndices: [Int]) {
        self.source = source
        self.rules = rules
        self.ruleIndices = ruleIndices
        matchers = rules.map { $0.pattern.map(PatternMatcher.init) }
        whereMatchers = rules.map { $0.whereClauses.map { PatternMatcher($0.pattern) } }
        values = rules.map { [String?](repeating: nil, count: $0.slotNames.count) }
    }

    /// Tries the source's rules in order on `text` (valid UTF-8); the first that matches decides.
    public func evaluate(_ text: UnsafeBufferPointer<UInt8>, sourceKey: SourceKey) -> RuleOutcome {
        json = nil
        logfmt = nil
        for i in rules.indices {
            let rule = rules[i]
            let matched: Bool
            switch rule.kind {
            case .pattern: matched = matchPattern(i, text)
            case .json: matched = matchJSON(i, text)
            case .logfmt: matched = matchLogfmt(i, text)
            }
            guard matched else { continue }
            return build(i, text, sourceKey)
        }
        return .unmatched
    }

    // MARK: - Matching

    private func matchPattern(_ i: Int, _ text: UnsafeBufferPointer<UInt8>) -> Bool {
        let matcher = matchers[i]!
        guard matcher.matches(text) else { return false }
        let rule = rules[i]
        for slot in rule.neededSlots {
            let group = rule.groupForSlot[slot]
            if group >= 0, let r = matcher.range(ofGroup: group) {
                values[i][slot] = String(decoding: UnsafeBufferPointer(rebasing: text[r]), as: UTF8.self)
            } else {
                values[i][slot] = nil
            }
        }
        return true
    }

    private func matchJSON(_ i: Int, _ text: UnsafeBufferPointer<UInt8>) -> Bool {
        if json == nil {
            var first = 0
            while first < text.count, text[first] == 0x20 || text[first] == 0x09 { first += 1 }
            if first < text.count, text[first] == UInt8(ascii: "{") {
                json = .some(try? JSONSerialization.jsonObject(with: Data(buffer: text)))
            } else {
                json = .some(nil)
            }
        }
        guard case .some(.some(let object)) = json else { return false }
        let rule = rules[i]
        for (slot, path) in rule.structuredFields {
            guard let value = Self.lookup(object, path) else { return false }
            values[i][slot] = value
        }
        return applyWhere(i)
    }

    private func matchLogfmt(_ i: Int, _ text: UnsafeBufferPointer<UInt8>) -> Bool {
        if logfmt == nil { logfmt = Self.parseLogfmt(Substring(decoding: text, as: UTF8.self)) }
        let pairs = logfmt!
        let rule = rules[i]
        for (slot, path) in rule.structuredFields {
            guard let value = pairs[Substring(path[0])] else { return false }
            values[i][slot] = String(value)
        }
        return applyWhere(i)
    }

    private func applyWhere(_ i: Int) -> Bool {
        let rule = rules[i]
        for (w, clause) in rule.whereClauses.enumerated() {
            guard var value = values[i][clause.slot] else { return false }
            let matcher = whereMatchers[i][w]
            let ok = value.withUTF8 { buf -> Bool in
                guard matcher.matches(buf) else { return false }
                for (group, slot) in clause.groupSlots {
                    if let r = matcher.range(ofGroup: group) {
                        values[i][slot] = String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self)
                    }
                }
                return true
            }
            if !ok { return false }
        }
        return true
    }

    // MARK: - Building the event

    private func build(_ i: Int, _ text: UnsafeBufferPointer<UInt8>, _ sourceKey: SourceKey) -> RuleOutcome {
        let rule = rules[i]
        let index = ruleIndices[i]
        let zone = rule.zone ?? source.zone
        let time: Int64?
        if rule.kind == .pattern {
            let group = rule.groupForSlot[rule.timestampSlot]
            guard group >= 0, let r = matchers[i]!.range(ofGroup: group), !r.isEmpty else {
                return .rejected(rule: index, reason: .missingTimestamp)
            }
            time = rule.timestampFormat.parse(UnsafeBufferPointer(rebasing: text[r]), zone: zone)
        } else {
            guard let t = values[i][rule.timestampSlot], !t.isEmpty else {
                return .rejected(rule: index, reason: .missingTimestamp)
            }
            time = rule.timestampFormat.parse(t, zone: zone)
        }
        guard let time else { return .rejected(rule: index, reason: .badTimestamp) }
        let v = values[i]

        var link: AliasLink? = nil
        if let l = rule.link {
            guard let key = l.key.render(v), let order = l.orderID.render(v) else {
                return .rejected(rule: index, reason: .missingOrderID)
            }
            link = AliasLink(alias: AliasKey(kind: l.kind, key: key), orderID: order)
        }
        let zoneRule = rule.zoneName ?? source.zone.identifier
        guard let e = rule.event else {
            let link = link!
            return .matched(
                rule: index,
                event: OrderEvent(
                    key: .order(link.orderID), service: source.service, kind: .fileLink,
                    name: "\(link.alias.kind) \(link.alias.key) linked", timeUnixNano: time,
                    zoneRule: zoneRule, attributes: [Attribute("tracebridge.alias", link.alias.description)],
                    sourceKey: sourceKey, rule: rule.name, link: link))
        }
        let key: OrderKey
        if let t = e.orderID {
            guard let id = t.render(v) else { return .rejected(rule: index, reason: .missingOrderID) }
            key = .order(id)
        } else if let kind = e.aliasKind, let t = e.aliasKey {
            guard let k = t.render(v) else { return .rejected(rule: index, reason: .missingOrderID) }
            key = .alias(AliasKey(kind: kind, key: k))
        } else if let link {
            key = .order(link.orderID)
        } else {
            return .rejected(rule: index, reason: .missingOrderID)
        }
        var status: String? = nil
        if let t = e.status {
            guard let s = t.render(v) else { return .rejected(rule: index, reason: .missingStatus) }
            status = s
        }
        var attributes: [Attribute] = []
        attributes.reserveCapacity(e.attributes.count)
        for (k, t) in e.attributes {
            if let value = t.render(v) { attributes.append(Attribute(k, value)) }
        }
        return .matched(
            rule: index,
            event: OrderEvent(
                key: key, service: source.service, kind: e.kind, status: status, step: e.step?.render(v),
                name: e.name?.render(v) ?? rule.name, timeUnixNano: time, zoneRule: zoneRule,
                userID: e.userID?.render(v), attributes: attributes, sourceKey: sourceKey, rule: rule.name,
                link: link))
    }

    // MARK: - Structured records

    static func lookup(_ object: Any, _ path: [String]) -> String? {
        var current: Any = object
        for token in path {
            if let dict = current as? [String: Any], let next = dict[token] {
                current = next
            } else if let array = current as? [Any], let n = Int(token), n >= 0, n < array.count {
                current = array[n]
            } else {
                return nil
            }
        }
        switch current {
        case let s as String: return s
        case is NSNull: return nil
        case let n as NSNumber:
            // JSONSerialization gives booleans as NSNumber of type char ("c").
            if String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }
            return n.stringValue
        case let b as Bool: return b ? "true" : "false"
        default:
            guard let data = try? JSONSerialization.data(withJSONObject: current, options: [.sortedKeys]) else {
                return nil
            }
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// `key=value key2="quoted \"value\""` → pairs; a bare key has an empty value.
    static func parseLogfmt(_ line: Substring) -> [Substring: Substring] {
        var pairs: [Substring: Substring] = [:]
        var i = line.startIndex
        let end = line.endIndex
        while i < end {
            while i < end, line[i] == " " || line[i] == "\t" { i = line.index(after: i) }
            guard i < end else { break }
            let keyStart = i
            while i < end, line[i] != "=", line[i] != " ", line[i] != "\t" { i = line.index(after: i) }
            let key = line[keyStart..<i]
            guard i < end, line[i] == "=" else {
                if !key.isEmpty { pairs[key] = "" }
                continue
            }
            i = line.index(after: i)
            if i < end, line[i] == "\"" {
                i = line.index(after: i)
                var value = ""
                var closed = false
                while i < end {
                    let c = line[i]
                    if c == "\\", line.index(after: i) < end {
                        i = line.index(after: i)
                        let e = line[i]
                        value.append(e == "n" ? "\n" : e == "t" ? "\t" : e)
                    } else if c == "\"" {
                        closed = true
                        i = line.index(after: i)
                        break
                    } else {
                        value.append(c)
                    }
                    i = line.index(after: i)
                }
                _ = closed
                pairs[key] = Substring(value)
            } else {
                let valueStart = i
                while i < end, line[i] != " ", line[i] != "\t" { i = line.index(after: i) }
                pairs[key] = line[valueStart..<i]
            }
        }
        return pairs
    }
}
