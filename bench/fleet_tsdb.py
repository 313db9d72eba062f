"""Writes Prometheus TSDB blocks (index format v2, XOR chunks) for the fleet benchmark's history.

Why not `promtool tsdb create-blocks-from openmetrics`: 24 h of a 10,000-node fleet at a 30 s
scrape interval is about 2 million series x 2,880 samples = 6 billion samples, some 650 GB of
OpenMetrics text; promtool reads its input whole (mmap) and the disk here has 58 GB free. The
blocks are written directly instead, in the format the Prometheus server reads
(tsdb/docs/format/index.md and chunks.md of the Prometheus repository), and checked by the
server itself: it opens them, and every query of the benchmark reads them.

What makes it fast enough in Python: the nodes of one class (a recorded exporter, see
bench/fleet.py) carry the same values, so each chunk is XOR-encoded once per class and copied
per node, with the node's own scrape offset patched into the chunk's first timestamp (a varint of
the same length: the rest of the chunk is deltas). Each node keeps its own label set, series,
chunks and chunk references, so the index, the postings and the bytes Prometheus reads are those
of N distinct nodes.

Layout: blocks as a long-running server's compactor leaves them (one block per 18 h window of the
epoch, 2 chunks of 120 samples per series and 2 h, the newest block last), so that opening the
data directory triggers no compaction. Python 3 standard library plus crc32c and numpy.
"""

import json
import os
import struct
import time
from pathlib import Path

import crc32c
import numpy as np

HOUR_MS = 3_600_000
STEP_MS = 30_000                 # the scrape interval of the history (deploy/prometheus/prometheus.yml)
STEPS_PER_CHUNK = 120            # Prometheus cuts head chunks at 120 samples: 1 h at 30 s
COMPACTION_RANGE_MS = 18 * HOUR_MS  # the largest of the compactor's default ranges (2h, 6h, 18h)
SEGMENT_MAX = 512 << 20          # chunks segment files are at most 512 MiB
ENC_XOR = b"\x01"
ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def uvarint(x):
    out = bytearray()
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def varint(x):
    return uvarint((x << 1) ^ (x >> 63) if x < 0 else x << 1)


def ulid(ms, rand):
    """A ULID (what Prometheus names block directories with): 48 bits of time, 80 of randomness."""
    n = (ms << 80) | rand
    return "".join(ULID_ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(26)))


class BitWriter:
    """Bits written most significant first, as Prometheus' bstream does."""

    __slots__ = ("acc", "n")

    def __init__(self):
        self.acc = 0
        self.n = 0

    def write(self, value, nbits):
        self.acc = (self.acc << nbits) | (value & ((1 << nbits) - 1))
        self.n += nbits

    def bytes(self):
        pad = (-self.n) % 8
        return ((self.acc << pad)).to_bytes((self.n + pad) // 8, "big")


def _bit_range(x, nbits):
    return -((1 << (nbits - 1)) - 1) <= x <= (1 << (nbits - 1))


def encode_xor(ts, bits):
    """One XOR chunk (chunkenc/xor.go) from timestamps (ms) and float64 bit patterns; the data part,
    without the chunk's length, encoding and CRC."""
    w = BitWriter()
    for b in varint(ts[0]):
        w.write(b, 8)
    w.write(bits[0], 64)
    leading, trailing = 0xFF, 0
    t_delta = 0
    for i in range(1, len(ts)):
        d = ts[i] - ts[i - 1]
        if i == 1:
            for b in uvarint(d):
                w.write(b, 8)
        else:
            dod = d - t_delta
            if dod == 0:
                w.write(0, 1)
            elif _bit_range(dod, 14):
                w.write(0b10, 2)
                w.write(dod, 14)
            elif _bit_range(dod, 17):
                w.write(0b110, 3)
                w.write(dod, 17)
            elif _bit_range(dod, 20):
                w.write(0b1110, 4)
                w.write(dod, 20)
            else:
                w.write(0b1111, 4)
                w.write(dod, 64)
        t_delta = d
        x = bits[i] ^ bits[i - 1]
        if x == 0:
            w.write(0, 1)
            continue
        w.write(1, 1)
        lead = 64 - x.bit_length()
        trail = (x & -x).bit_length() - 1
        if lead >= 32:
            lead = 31
        if leading != 0xFF and lead >= leading and trail >= trailing:
            w.write(0, 1)
            w.write(x >> trailing, 64 - leading - trailing)
        else:
            leading, trailing = lead, trail
            w.write(1, 1)
            w.write(lead, 5)
            sig = 64 - lead - trail
            w.write(sig, 6)  # 64 is written as 0, as Prometheus does
            w.write(x >> trail, sig)
    return struct.pack(">H", len(ts)) + w.bytes()


def block_layout(start_ms, old_end_ms, end_ms):
    """[(mint, maxt)] of the blocks: one per 18 h window of the epoch over [start, old_end) (what the
    compactor makes of 2 h blocks older than the newest), then [old_end, end) as the newest."""
    out = []
    t = start_ms
    while t < old_end_ms:
        w_end = (t // COMPACTION_RANGE_MS + 1) * COMPACTION_RANGE_MS
        out.append((t, min(w_end, old_end_ms)))
        t = min(w_end, old_end_ms)
    if end_ms > old_end_ms:
        out.append((old_end_ms, end_ms))
    return out


class Fleet:
    """What the writer needs to know about the fleet.

    - classes: list of dicts with `series` (list of label tuples ((name, value), ...) including
      __name__, without the node's labels) and `values` (float64 array [n_series, n_steps]).
    - node_class: int array (node -> class index); node_offset_ms: int array (node -> scrape offset,
      one of a few values so that chunks can be shared); node_labels(n) -> tuple of (name, value)
      pairs added to every series of node n; node_series_labels(n, labels) -> the node's own
      rewrite of one series' labels (e.g. its instance_id), or labels.
    - start_ms: the time of step 0 (aligned to 2 h); jitter_ms: int array [n_steps] (the scrape
      loop's timing noise, shared by all nodes).
    """

    def __init__(self, classes, node_class, node_offset_ms, node_labels, node_series_labels, start_ms, jitter_ms):
        self.classes = classes
        self.node_class = node_class
        self.node_offset_ms = node_offset_ms
        self.node_labels = node_labels
        self.node_series_labels = node_series_labels
        self.start_ms = start_ms
        self.jitter_ms = jitter_ms


class Writer:
    def __init__(self, fleet, log=print):
        self.f = fleet
        self.log = log
        self._chunk_cache = {}
        self._prepare_index()

    # ------------------------------------------------------------------------------ index prep
    def _prepare_index(self):
        """Every series of every node, sorted by label set; the symbols; the postings (as positions
        in that order). Shared by all blocks: every series spans the whole history."""
        t0 = time.monotonic()
        f = self.f
        n_nodes = len(f.node_class)
        by_name = {}
        for n in range(n_nodes):
            c = f.classes[f.node_class[n]]
            extra = f.node_labels(n)
            for j, labels in enumerate(c["series"]):
                full = tuple(sorted(f.node_series_labels(n, labels) + extra))
                name = full[0][1] if full[0][0] == "__name__" else ""
                by_name.setdefault(name, []).append((full, n, j))
        order_labels, order_node, order_j = [], [], []
        for name in sorted(by_name):
            group = by_name.pop(name)
            group.sort(key=lambda e: e[0])
            for full, n, j in group:
                order_labels.append(full)
                order_node.append(n)
                order_j.append(j)
        symbols = set()
        for full in order_labels:
            for k, v in full:
                symbols.add(k)
                symbols.add(v)
        symbols = sorted(symbols)
        sym_index = {s: i for i, s in enumerate(symbols)}
        postings = {}
        label_bytes = []
        for pos, full in enumerate(order_labels):
            b = bytearray(uvarint(len(full)))
            for k, v in full:
                b += uvarint(sym_index[k])
                b += uvarint(sym_index[v])
                postings.setdefault((k, v), []).append(pos)
            label_bytes.append(bytes(b))
        self.n_series = len(order_labels)
        self.order_node = np.array(order_node, dtype=np.int64)
        self.order_j = np.array(order_j, dtype=np.int64)
        self.symbols = symbols
        self.sym_index = sym_index
        self.label_bytes = label_bytes
        self.postings = {k: np.array(v, dtype=np.int64) for k, v in sorted(postings.items())}
        self.label_values = {}
        for k, v in self.postings:
            self.label_values.setdefault(k, []).append(v)
        del order_labels
        self.log(f"  index: {self.n_series:,} series, {len(symbols):,} symbols, {len(self.postings):,} postings lists "
                 f"({time.monotonic() - t0:.0f} s)")

    # ------------------------------------------------------------------------------ chunks
    def _chunk(self, cls, j, c, limit):
        """The XOR data of chunk c (steps [120c, 120c+120), none at or after `limit`) of series j of
        class cls, node offset 0."""
        values = self.f.classes[cls]["values"]
        lo, hi = c * STEPS_PER_CHUNK, min((c + 1) * STEPS_PER_CHUNK, values.shape[1], limit)
        v = values[j, lo:hi]
        key = (c, hi, v.tobytes())
        data = self._chunk_cache.get(key)
        if data is None:
            steps = np.arange(lo, hi, dtype=np.int64)
            ts = (self.f.start_ms + steps * STEP_MS + self.f.jitter_ms[lo:hi]).tolist()
            data = encode_xor(ts, v.view(np.uint64).tolist())
            self._chunk_cache[key] = data
        return data

    def _node_blob(self, cls, offset_ms, chunk_range, limit):
        """All chunks of one node of class cls with scrape offset offset_ms for the block's chunks
        chunk_range, as the bytes of the chunks file, and per series and chunk (relative offset,
        mint, maxt)."""
        n_series = len(self.f.classes[cls]["series"])
        blob = bytearray()
        metas = []
        for j in range(n_series):
            m = []
            for c in chunk_range:
                data = self._chunk(cls, j, c, limit)
                n = struct.unpack(">H", data[:2])[0]
                lo = c * STEPS_PER_CHUNK
                t_first = self.f.start_ms + lo * STEP_MS + int(self.f.jitter_ms[lo])
                t_last = self.f.start_ms + (lo + n - 1) * STEP_MS + int(self.f.jitter_ms[lo + n - 1])
                old = varint(t_first)
                new = varint(t_first + offset_ms)
                assert len(old) == len(new) and data[2:2 + len(old)] == old
                data = data[:2] + new + data[2 + len(old):]
                rec = ENC_XOR + data
                m.append((len(blob), t_first + offset_ms, t_last + offset_ms))
                blob += uvarint(len(data)) + rec + struct.pack(">I", crc32c.crc32c(rec))
            metas.append(m)
        return bytes(blob), metas

    # ------------------------------------------------------------------------------ a block
    def write_block(self, data_dir, mint, maxt, rand):
        """One block over the steps whose chunks fall in [mint, maxt) (both on chunk boundaries)."""
        t0 = time.monotonic()
        f = self.f
        n_steps = min(f.classes[0]["values"].shape[1], (maxt - f.start_ms) // STEP_MS)
        c_lo = (mint - f.start_ms) // (STEPS_PER_CHUNK * STEP_MS)
        c_hi = min(-(-(maxt - f.start_ms) // (STEPS_PER_CHUNK * STEP_MS)), -(-n_steps // STEPS_PER_CHUNK))
        chunk_range = range(c_lo, c_hi)
        block_id = ulid(maxt, rand)
        tmp = Path(data_dir) / (block_id + ".tmp-for-creation")
        (tmp / "chunks").mkdir(parents=True)

        # Chunks: node by node (each node's chunks together), segments of at most 512 MiB.
        blobs = {}
        n_nodes = len(f.node_class)
        node_base = np.zeros(n_nodes, dtype=np.int64)
        seg_no, seg = 1, None
        seg_len = 0
        n_chunks = 0
        for n in range(n_nodes):
            key = (int(f.node_class[n]), int(f.node_offset_ms[n]))
            if key not in blobs:
                blobs[key] = self._node_blob(key[0], key[1], chunk_range, n_steps)
            blob, _ = blobs[key]
            if seg is None or seg_len + len(blob) > SEGMENT_MAX:
                if seg is not None:
                    seg.close()
                    seg_no += 1
                seg = open(tmp / "chunks" / f"{seg_no:06d}", "wb", buffering=8 << 20)
                seg.write(struct.pack(">IB3x", 0x85BD40DD, 1))
                seg_len = 8
            node_base[n] = (seg_no - 1) << 32 | seg_len
            seg.write(blob)
            seg_len += len(blob)
        seg.close()

        # Index.
        idx = open(tmp / "index", "wb", buffering=8 << 20)
        pos = 0

        def put(b):
            nonlocal pos
            idx.write(b)
            pos += len(b)

        def pad(align):
            if pos % align:
                put(b"\0" * (align - pos % align))

        put(struct.pack(">IB", 0xBAAAD700, 2))
        # Symbol table.
        toc_symbols = pos
        body = bytearray(struct.pack(">I", len(self.symbols)))
        for s in self.symbols:
            sb = s.encode()
            body += uvarint(len(sb)) + sb
        put(struct.pack(">I", len(body)) + body + struct.pack(">I", crc32c.crc32c(body)))
        # Series, 16-byte aligned; ID = offset / 16.
        pad(16)
        toc_series = pos
        ids = np.zeros(self.n_series, dtype=np.int64)
        for s in range(self.n_series):
            n = int(self.order_node[s])
            j = int(self.order_j[s])
            _, metas = blobs[(int(f.node_class[n]), int(f.node_offset_ms[n]))]
            m = metas[j]
            base = int(node_base[n])
            body = bytearray(self.label_bytes[s])
            body += uvarint(len(m))
            prev_maxt, prev_ref = None, None
            for rel, cmint, cmaxt in m:
                ref = base + rel
                if prev_maxt is None:
                    body += varint(cmint) + uvarint(cmaxt - cmint) + uvarint(ref)
                else:
                    body += uvarint(cmint - prev_maxt) + uvarint(cmaxt - cmint) + varint(ref - prev_ref)
                prev_maxt, prev_ref = cmaxt, ref
            n_chunks += len(m)
            if pos % 16:
                put(b"\0" * (16 - pos % 16))
            ids[s] = pos // 16
            put(uvarint(len(body)) + body + struct.pack(">I", crc32c.crc32c(body)))
        # Samples: every series has one sample per step in the block's chunks.
        first_step = c_lo * STEPS_PER_CHUNK
        last_step = min(c_hi * STEPS_PER_CHUNK, n_steps)
        n_samples = self.n_series * (last_step - first_step)
        # Label indices (no longer read, written as Prometheus does) and their offset table.
        pad(4)
        toc_label_indices = pos
        label_index_offsets = []
        for name in sorted(self.label_values):
            pad(4)
            label_index_offsets.append((name, pos))
            vals = self.label_values[name]
            body = struct.pack(">II", 1, len(vals)) + b"".join(struct.pack(">I", self.sym_index[v]) for v in vals)
            put(struct.pack(">I", len(body)) + body + struct.pack(">I", crc32c.crc32c(body)))
        pad(4)
        toc_label_table = pos
        body = bytearray(struct.pack(">I", len(label_index_offsets)))
        for name, off in label_index_offsets:
            nb = name.encode()
            body += b"\x01" + uvarint(len(nb)) + nb + uvarint(off)
        put(struct.pack(">I", len(body)) + body + struct.pack(">I", crc32c.crc32c(body)))
        # Postings: all series first (the empty label pair), then every label pair in order.
        pad(4)
        toc_postings = pos
        postings_offsets = []

        def write_postings(key, series_ids):
            pad(4)
            postings_offsets.append((key, pos))
            body = struct.pack(">I", len(series_ids)) + series_ids.astype(">u4").tobytes()
            put(struct.pack(">I", len(body)) + body + struct.pack(">I", crc32c.crc32c(body)))

        write_postings(("", ""), ids)
        for key, positions in self.postings.items():
            write_postings(key, ids[positions])
        pad(4)
        toc_postings_table = pos
        body = bytearray(struct.pack(">I", len(postings_offsets)))
        for (k, v), off in postings_offsets:
            kb, vb = k.encode(), v.encode()
            body += b"\x02" + uvarint(len(kb)) + kb + uvarint(len(vb)) + vb + uvarint(off)
        put(struct.pack(">I", len(body)) + body + struct.pack(">I", crc32c.crc32c(body)))
        toc = struct.pack(">QQQQQQ", toc_symbols, toc_series, toc_label_indices, toc_label_table,
                          toc_postings, toc_postings_table)
        put(toc + struct.pack(">I", crc32c.crc32c(toc)))
        idx.close()

        level = 1 if maxt - mint <= 2 * HOUR_MS else (2 if maxt - mint <= 6 * HOUR_MS else 3)
        meta = {"ulid": block_id, "minTime": mint, "maxTime": maxt,
                "stats": {"numSamples": n_samples, "numSeries": self.n_series, "numChunks": n_chunks},
                "compaction": {"level": level, "sources": [block_id]}, "version": 1}
        (tmp / "meta.json").write_text(json.dumps(meta, indent="\t"))
        os.rename(tmp, Path(data_dir) / block_id)
        size = sum(p.stat().st_size for p in (Path(data_dir) / block_id).rglob("*") if p.is_file())
        self.log(f"  block {block_id} [{(maxt - mint) / HOUR_MS:.1f} h]: {self.n_series:,} series, {n_chunks:,} chunks, "
                 f"{n_samples:,} samples, {size / 2**20:,.0f} MiB ({time.monotonic() - t0:.0f} s)")
        return {"ulid": block_id, "hours": (maxt - mint) / HOUR_MS, "series": self.n_series, "chunks": n_chunks,
                "samples": n_samples, "bytes": size, "seconds": time.monotonic() - t0}
