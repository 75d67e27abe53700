"""Check RTP in a tcpdump pcap: per-SSRC seq/timestamp/marker/pacing, and whether payloads are
plaintext (160-byte chunks found in a reference mu-law file) -- usable for SRTP proofs too.
usage: rtpcheck.py FILE.pcap [--dport N | --sport N] [--ref jfk8k.ulaw]"""
import argparse, math, statistics, struct, collections, json

def packets(path):
    d = open(path, "rb").read()
    magic = struct.unpack("<I", d[:4])[0]
    e = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    ns = magic in (0xa1b23c4d, 0x4d3cb2a1)
    link = struct.unpack(e + "I", d[20:24])[0]
    off = 24
    while off + 16 <= len(d):
        ts, tu, incl, _ = struct.unpack(e + "IIII", d[off:off + 16]); off += 16
        pkt = d[off:off + incl]; off += incl
        t = ts + tu / (1e9 if ns else 1e6)
        if link == 1: pkt = pkt[14:]          # ethernet
        elif link == 113: pkt = pkt[16:]      # linux cooked
        elif link == 0: pkt = pkt[4:]         # BSD loopback
        elif link == 276: pkt = pkt[20:]      # linux cooked v2
        if not pkt or pkt[0] >> 4 != 4 or pkt[9] != 17: continue
        ihl = (pkt[0] & 15) * 4
        sp, dp = struct.unpack(">HH", pkt[ihl:ihl + 4])
        yield t, sp, dp, pkt[ihl + 8:]

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("pcap"); ap.add_argument("--dport", type=int); ap.add_argument("--sport", type=int)
    ap.add_argument("--ref"); ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    ref = open(a.ref, "rb").read() if a.ref else None
    streams = collections.defaultdict(list)
    for t, sp, dp, u in packets(a.pcap):
        if a.dport and dp != a.dport: continue
        if a.sport and sp != a.sport: continue
        if len(u) < 12 or u[0] >> 6 != 2: continue
        pt = u[1] & 0x7f
        if 72 <= pt <= 76: continue  # RTCP
        m = u[1] >> 7
        seq, ts, ssrc = struct.unpack(">HII", u[2:12])
        cc = u[0] & 15; hl = 12 + 4 * cc
        if u[0] & 0x10: hl += 4 + 4 * struct.unpack(">H", u[hl + 2:hl + 4])[0]
        streams[(ssrc, sp, dp)].append((t, seq, ts, m, pt, u[hl:]))
    out = []
    for (ssrc, sp, dp), ps in streams.items():
        seqerr = sum(1 for x, y in zip(ps, ps[1:]) if (y[1] - x[1]) & 0xffff != 1)
        audio = [p for p in ps if p[4] in (0, 8)]
        tsd = collections.Counter(((y[2] - x[2]) & 0xffffffff) for x, y in zip(audio, audio[1:]))
        gaps = [(y[0] - x[0]) * 1000 for x, y in zip(ps, ps[1:])]
        pay = b"".join(p[5] for p in audio)
        cnt = collections.Counter(pay)
        ent = -sum(c / len(pay) * math.log2(c / len(pay)) for c in cnt.values()) if pay else 0
        plain = sum(1 for p in audio if ref and len(p[5]) >= 160 and p[5][:160] in ref) if ref else None
        r = dict(ssrc=hex(ssrc), sport=sp, dport=dp, packets=len(ps), pts=sorted({p[4] for p in ps}),
                 seq_discontinuities=seqerr, ts_deltas=dict(tsd.most_common(4)),
                 markers=[i for i, p in enumerate(ps) if p[3]][:10], payload_len=sorted({len(p[5]) for p in ps})[:5],
                 gap_ms_p50=round(statistics.median(gaps), 2) if gaps else None,
                 gap_ms_p99=round(sorted(gaps)[int(len(gaps) * .99)], 2) if gaps else None,
                 gap_ms_max=round(max(gaps), 2) if gaps else None,
                 payload_entropy_bits=round(ent, 2), plaintext_frames_matching_ref=plain)
        out.append(r)
    print(json.dumps(out, indent=None if a.json else 1))

main()
