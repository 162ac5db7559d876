#!/usr/bin/env python3
"""Independent reference reader for the .spqr format, written from spec/SPEC.md alone.

It shares no code with the C library: its own XXH64, its own f16 handling, its own bit unpacking.
The dequantization follows SPEC §7 with binary32 rounding after every operation (Python floats
are binary64; rounding a binary64 sum/product of two binary32 values to binary32 gives the
correctly rounded binary32 result, since 53 >= 2*24 + 2).

Usage:
  reference_decoder.py FILE.spqr            print tensors and their first values
  reference_decoder.py --check DIR          decode every DIR/NAME.spqr, compare with NAME.expected.f32
"""
import os
import struct
import subprocess
import sys

P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
M = (1 << 64) - 1


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def _round(acc, lane):
    acc = (acc + lane * P2) & M
    return (_rotl(acc, 31) * P1) & M


def _merge(acc, val):
    acc ^= _round(0, val)
    return (acc * P1 + P4) & M


def xxh64(data, seed=0):
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            lanes = struct.unpack_from("<4Q", data, i)
            v = [_round(v[k], lanes[k]) for k in range(4)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M
        for k in range(4):
            h = _merge(h, v[k])
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h ^= _round(0, struct.unpack_from("<Q", data, i)[0])
        h = (_rotl(h, 27) * P1 + P4) & M
        i += 8
    if i + 4 <= n:
        h ^= (struct.unpack_from("<I", data, i)[0] * P1) & M
        h = (_rotl(h, 23) * P2 + P3) & M
        i += 4
    while i < n:
        h ^= (data[i] * P5) & M
        h = (_rotl(h, 11) * P1) & M
        i += 1
    h ^= h >> 33
    h = (h * P2) & M
    h ^= h >> 29
    h = (h * P3) & M
    h ^= h >> 32
    return h


def f32(x):
    """Round a Python float to binary32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f16(u16):
    return struct.unpack("<e", struct.pack("<H", u16))[0]


def bf16(u16):
    return struct.unpack("<f", struct.pack("<I", u16 << 16))[0]


def unpack(row_bytes, i, b):
    """Value i of a packed row (SPEC §6): bits [i*b, i*b+b), LSB-first over little-endian words."""
    bit = i * b
    word = bit // 32
    lo = struct.unpack_from("<I", row_bytes, 4 * word)[0]
    hi = struct.unpack_from("<I", row_bytes, 4 * word + 4)[0] if (bit % 32) + b > 32 else 0
    return ((lo | (hi << 32)) >> (bit % 32)) & ((1 << b) - 1)


def words(n, b):
    return -(-n // 32) * b


class SpqrError(Exception):
    pass


def read(path):
    data = open(path, "rb").read()
    if len(data) < 80 or data[:8] != b"SPQR\r\n\x1a\n":
        raise SpqrError("R1 bad magic")
    version, align, fsize, mo, ms, do, ds, count = struct.unpack_from("<IIQQQQQI", data, 8)
    if version not in (1, 2):
        raise SpqrError("R2 version")
    if fsize != len(data):
        raise SpqrError("R4 size")
    if xxh64(data[:72] + data[mo:mo + ms] + data[do:do + ds]) != struct.unpack_from("<Q", data, 72)[0]:
        raise SpqrError("R7 header checksum")
    meta, p = {}, mo + 4
    for _ in range(struct.unpack_from("<I", data, mo)[0]):
        kl = data[p]
        key = data[p + 1:p + 1 + kl].decode("ascii")
        typ = data[p + 1 + kl]
        p += 2 + kl
        if typ == 1:
            ln = struct.unpack_from("<Q", data, p)[0]
            meta[key] = data[p + 8:p + 8 + ln].decode("utf-8")
            p += 8 + ln
        elif typ == 2:
            meta[key] = struct.unpack_from("<q", data, p)[0]
            p += 8
        else:
            meta[key] = struct.unpack_from("<d", data, p)[0]
            p += 8
    tensors, p = [], do
    for _ in range(count):
        nl = struct.unpack_from("<H", data, p)[0]
        name = data[p + 2:p + 2 + nl].decode("utf-8")
        F = p + 2 + nl
        kind, dtype, ndim, w, s, _res, flags, b1, b2 = struct.unpack_from("<BBBBBBHII", data, F)
        dims = struct.unpack_from("<4Q", data, F + 16)[:ndim]
        nnz = struct.unpack_from("<Q", data, F + 48)[0]
        nsec = data[F + 56]
        secs = []
        for k in range(nsec):
            off, stored, raw, csum, codec = struct.unpack_from("<QQQQB", data, F + 57 + 40 * k)
            blob = data[off:off + stored]
            if raw and xxh64(blob) != csum:
                raise SpqrError("R15 checksum of %s section %d" % (name, k))
            if codec == 1:
                blob = subprocess.run(["zstd", "-d", "-c", "-q"], input=blob, stdout=subprocess.PIPE,
                                      check=True).stdout
            if len(blob) != raw:
                raise SpqrError("R12/R16 size of %s section %d" % (name, k))
            secs.append(blob)
        tensors.append(dict(name=name, kind=kind, dtype=dtype, dims=dims, w=w, s=s, flags=flags,
                            b1=b1, b2=b2, nnz=nnz, secs=secs, version=version))
        p = F + 57 + 40 * nsec
    return meta, tensors


def dequantize(t):
    """Returns the tensor's values in original (unpermuted) row-major order (SPEC §7)."""
    if t["kind"] == 1:
        raw = t["secs"][0]
        if t["dtype"] == 1:
            return list(struct.unpack("<%df" % (len(raw) // 4), raw))
        conv = f16 if t["dtype"] == 2 else bf16
        return [conv(u) for u in struct.unpack("<%dH" % (len(raw) // 2), raw)]
    R, C = t["dims"]
    w, s, b1, b2 = t["w"], t["s"], t["b1"], t["b2"]
    codes, scale, zero, stat2, rowptr, colidx, values, perm = t["secs"]
    G = -(-C // b2)
    # statistic rows: version 2 packs them densely (SPEC table 3), version 1 like codes
    cw = words(C, w) * 4
    sw = (words(G, s) if t["version"] == 1 else -(-G * s // 32)) * 4
    perm_idx = list(struct.unpack("<%dI" % C, perm)) if t["flags"] & 1 else list(range(C))
    out = [0.0] * (R * C)
    for r in range(R):
        crow = codes[r * cw:(r + 1) * cw]
        blk = r // b1
        for g in range(G):
            if s == 16:
                sc = f16(struct.unpack_from("<H", scale, 2 * (r * G + g))[0])
                zr = f16(struct.unpack_from("<H", zero, 2 * (r * G + g))[0])
            else:
                ss, zs, sz, zz = (f16(u) for u in struct.unpack_from("<4H", stat2, 8 * (blk * G + g)))
                qs = unpack(scale[r * sw:(r + 1) * sw], g, s)
                qz = unpack(zero[r * sw:(r + 1) * sw], g, s)
                sc = f32(ss * f32(qs - zs))
                zr = f32(sz * f32(qz - zz))
            for j in range(g * b2, min((g + 1) * b2, C)):
                q = unpack(crow, j, w)
                out[r * C + perm_idx[j]] = f32(sc * f32(q - zr))
        k0, k1 = struct.unpack_from("<2I", rowptr, 4 * r)
        for k in range(k0, k1):
            j = (struct.unpack_from("<H", colidx, 2 * k)[0] if C <= 65536
                 else struct.unpack_from("<I", colidx, 4 * k)[0])
            out[r * C + perm_idx[j]] = f16(struct.unpack_from("<H", values, 2 * k)[0])
    return out


def check(directory):
    names = sorted(f[:-5] for f in os.listdir(directory) if f.endswith(".spqr"))
    failures = 0
    for name in names:
        _, tensors = read(os.path.join(directory, name + ".spqr"))
        got = b"".join(struct.pack("<%df" % len(v), *v) for v in (dequantize(t) for t in tensors))
        want = open(os.path.join(directory, name + ".expected.f32"), "rb").read()
        ok = got == want
        failures += not ok
        print("%-14s %d tensors: %s" % (name, len(tensors), "bit-exact" if ok else "MISMATCH"))
    print("%d passed, %d failed" % (len(names) - failures, failures))
    return 1 if failures or not names else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2]))
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    meta, tensors = read(sys.argv[1])
    for k, v in meta.items():
        print("%s = %r" % (k, v if not isinstance(v, str) or len(v) < 60 else "<%d chars>" % len(v)))
    for t in tensors:
        vals = dequantize(t)
        print(t["name"], t["dims"], vals[:4])
