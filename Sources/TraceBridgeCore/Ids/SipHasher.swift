/// SipHash-2-4 (Aumasson and Bernstein), a keyed 64-bit PRF. Swift's own `Hasher` is seeded
/// per process, so it cannot give ids that are stable across runs; this one is.
public struct SipHasher: Sendable {
    private var v0: UInt64
    private var v1: UInt64
    private var v2: UInt64
    private var v3: UInt64
    private var tail: UInt64 = 0
    private var tailCount: Int = 0
    private var length: Int = 0

    public init(k0: UInt64, k1: UInt64) {
        v0 = k0 ^ 0x736f_6d65_7073_6575
        v1 = k1 ^ 0x646f_7261_6e64_6f6d
        v2 = k0 ^ 0x6c79_6765_6e65_7261
        v3 = k1 ^ 0x7465_6462_7974_6573
    }

    public mutating func append(byte: UInt8) {
        tail |= UInt64(byte) << (8 * UInt64(tailCount))
        tailCount += 1
        length += 1
        if tailCount == 8 {
            compress(tail)
            tail = 0
            tailCount = 0
        }
    }

    public mutating func append(_ bytes: [UInt8]) {
        for b in bytes { append(byte: b) }
    }

    public mutating func append(word: UInt64) {
        for i in 0..<8 { append(byte: UInt8(truncatingIfNeeded: word >> (8 * UInt64(i)))) }
    }

    public mutating func finish() -> UInt64 {
        let b = (UInt64(length & 0xFF) << 56) | tail
        compress(b)
        v2 ^= 0xFF
        round()
        round()
        round()
        round()
        return v0 ^ v1 ^ v2 ^ v3
    }

    private mutating func compress(_ m: UInt64) {
        v3 ^= m
        round()
        round()
        v0 ^= m
    }

    private mutating func round() {
        v0 &+= v1
        v1 = rotl(v1, 13)
        v1 ^= v0
        v0 = rotl(v0, 32)
        v2 &+= v3
        v3 = rotl(v3, 16)
        v3 ^= v2
        v0 &+= v3
        v3 = rotl(v3, 21)
        v3 ^= v0
        v2 &+= v1
        v1 = rotl(v1, 17)
        v1 ^= v2
        v2 = rotl(v2, 32)
    }

    private func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 { (x << b) | (x >> (64 - b)) }
}
