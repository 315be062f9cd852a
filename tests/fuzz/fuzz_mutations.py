"""Mutations of a valid input file, deterministic from a seed string: bit flips, overwritten
bytes, truncations, duplicated and zeroed chunks, and length fields set to absurd values.

Length fields are found by walking the format's own structure (sfnt table records, ISO BMFF
boxes, RIFF chunks, PNG chunks, JPEG segments, EBML element sizes, FLAC metadata blocks); any
other format gets 32-bit values written at random offsets. Mutations stay inside one structure
(a font table, an MP4 box) half of the time, so that deep parsers are reached, not just headers.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator

# A place in the file: (offset, size in bytes, byte order) of an integer that gives a length.
Field = tuple[int, int, str]
# A region of the file holding one structure: (start, end).
Region = tuple[int, int]

HUGE = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0x10000, 0)


def _u32(data: bytes, at: int, order: str = ">") -> int:
    value: int = struct.unpack_from(order + "I", data, at)[0]
    return value


def _sfnt(data: bytes) -> Iterator[tuple[Field | None, Region | None]]:
    if len(data) < 12:
        return
    count = struct.unpack_from(">H", data, 4)[0]
    yield (4, 2, ">"), None
    for i in range(count):
        rec = 12 + 16 * i
        if rec + 16 > len(data):
            return
        offset, length = _u32(data, rec + 8), _u32(data, rec + 12)
        yield (rec + 8, 4, ">"), None
        yield (rec + 12, 4, ">"), (offset, min(len(data), offset + length))


_BMFF_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"edts", b"udta"}
_BMFF_TABLES = {b"stsd", b"stts", b"stsc", b"stsz", b"stco", b"co64", b"ctts", b"stss", b"elst"}


def _bmff(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[Field, Region]]:
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = _u32(data, at), data[at + 4 : at + 8]
        if size < 8 or at + size > end:
            return
        yield (at, 4, ">"), (at, at + size)
        if kind in _BMFF_TABLES and at + 16 <= end:
            yield (at + 12, 4, ">"), (at, at + size)  # the entry count after the full-box header
        if kind in _BMFF_CONTAINERS:
            yield from _bmff(data, at + 8, at + size)
        at += size


def _riff(data: bytes, start: int = 12, end: int | None = None) -> Iterator[tuple[Field, Region]]:
    end = len(data) if end is None else end
    if start == 12:
        yield (4, 4, "<"), (0, len(data))
    at = start
    while at + 8 <= end:
        size = _u32(data, at + 4, "<")
        yield (at + 4, 4, "<"), (at, min(end, at + 8 + size))
        if data[at : at + 4] == b"LIST" and size >= 4:
            yield from _riff(data, at + 12, min(end, at + 8 + size))
        at += 8 + size + (size & 1)


def _png(data: bytes) -> Iterator[tuple[Field, Region]]:
    at = 8
    while at + 8 <= len(data):
        size = _u32(data, at)
        yield (at, 4, ">"), (at, min(len(data), at + 12 + size))
        if data[at + 4 : at + 8] == b"IHDR":
            yield (at + 8, 4, ">"), (at, at + 25)  # width
            yield (at + 12, 4, ">"), (at, at + 25)  # height
        at += 12 + size


def _jpeg(data: bytes) -> Iterator[tuple[Field, Region]]:
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        size = struct.unpack_from(">H", data, at + 2)[0]
        yield (at + 2, 2, ">"), (at, min(len(data), at + 2 + size))
        if marker in (0xC0, 0xC1, 0xC2) and at + 9 <= len(data):
            yield (at + 5, 2, ">"), (at, at + 2 + size)  # height
            yield (at + 7, 2, ">"), (at, at + 2 + size)  # width
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return
        at += 2 + size


_EBML_IDS = (
    b"\x1a\x45\xdf\xa3",  # EBML header
    b"\x18\x53\x80\x67",  # Segment
    b"\x16\x54\xae\x6b",  # Tracks
    b"\x1f\x43\xb6\x75",  # Cluster
    b"\xae",  # TrackEntry
    b"\xa3",  # SimpleBlock
    b"\x63\xa2",  # CodecPrivate
)


def _ebml(data: bytes) -> Iterator[tuple[Field, Region]]:
    for element in _EBML_IDS:
        at = data.find(element)
        while at >= 0 and at + len(element) < len(data):
            size_at = at + len(element)
            first = data[size_at]
            width = 8 - first.bit_length() + 1 if first else 0
            if 1 <= width <= 8 and size_at + width <= len(data):
                yield (size_at, -width, ">"), (at, min(len(data), at + 64))
            at = data.find(element, at + 1)


def _flac(data: bytes) -> Iterator[tuple[Field, Region]]:
    at = 4
    while at + 4 <= len(data):
        header = data[at]
        size = int.from_bytes(data[at + 1 : at + 4], "big")
        yield (at + 1, 3, ">"), (at, min(len(data), at + 4 + size))
        if header & 0x80:
            return
        at += 4 + size


def structure(data: bytes) -> tuple[list[Field], list[Region]]:
    """The length fields and structure regions of ``data``, told by its first bytes."""
    walker: Callable[[bytes], Iterator[tuple[Field | None, Region | None]]] | None = None
    head = data[:12]
    if head[:4] in (b"\x00\x01\x00\x00", b"OTTO", b"true"):
        walker = _sfnt
    elif head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        walker = _bmff
    elif head[:4] == b"RIFF":
        walker = _riff
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        walker = _png
    elif head[:2] == b"\xff\xd8":
        walker = _jpeg
    elif head[:4] == b"\x1a\x45\xdf\xa3":
        walker = _ebml
    elif head[:4] == b"fLaC":
        walker = _flac
    fields: list[Field] = []
    regions: list[Region] = []
    if walker is not None:
        try:
            for found_field, region in walker(data):
                if found_field is not None:
                    fields.append(found_field)
                if region is not None:
                    start, end = region[0], min(region[1], len(data))
                    if end > start:
                        regions.append((start, end))
        except (struct.error, IndexError):
            pass
    return fields, regions


def _span(rng: random.Random, data: bytearray, regions: list[Region]) -> Region:
    """Where a mutation lands: inside one structure half of the time, else anywhere."""
    if regions and rng.random() < 0.5:
        return rng.choice(regions)
    return 0, len(data)


def bit_flips(rng: random.Random, data: bytearray, regions: list[Region]) -> bytearray:
    lo, hi = _span(rng, data, regions)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(lo, hi)
        data[at] ^= 1 << rng.randrange(8)
    return data


def random_bytes(rng: random.Random, data: bytearray, regions: list[Region]) -> bytearray:
    lo, hi = _span(rng, data, regions)
    for _ in range(rng.randint(1, 16)):
        data[rng.randrange(lo, hi)] = rng.randrange(256)
    return data


def truncate(rng: random.Random, data: bytearray, regions: list[Region]) -> bytearray:
    return data[: rng.randrange(len(data))]


def duplicate_chunk(rng: random.Random, data: bytearray, regions: list[Region]) -> bytearray:
    lo, hi = _span(rng, data, regions)
    start = rng.randrange(lo, hi)
    chunk = data[start : start + rng.randint(1, max(1, min(4096, hi - start)))]
    at = rng.randrange(len(data))
    return data[:at] + chunk * rng.randint(1, 4) + data[at:]


def zero_chunk(rng: random.Random, data: bytearray, regions: list[Region]) -> bytearray:
    lo, hi = _span(rng, data, regions)
    start = rng.randrange(lo, hi)
    end = min(hi, start + rng.randint(1, 512))
    data[start:end] = bytes(end - start)
    return data


def oversized_length(
    rng: random.Random, data: bytearray, regions: list[Region], fields: list[Field]
) -> bytearray:
    if fields:
        at, width, order = rng.choice(fields)
    else:
        at, width, order = rng.randrange(max(1, len(data) - 4)), 4, rng.choice("<>")
    if width < 0:  # an EBML variable-size integer: all ones is "unknown", else the maximum
        width = -width
        value = (1 << (7 * width)) - rng.choice((1, 2))
        data[at : at + width] = (value | (1 << (7 * width))).to_bytes(width, "big")
        return data
    value = rng.choice(HUGE) & ((1 << (8 * width)) - 1)
    if rng.random() < 0.3:
        value = min((1 << (8 * width)) - 1, len(data) * rng.randint(2, 1000))
    data[at : at + width] = value.to_bytes(width, "big" if order == ">" else "little")
    return data


MUTATORS = ("bit_flips", "random_bytes", "truncate", "duplicate_chunk", "zero_chunk", "oversized")


def mutate(data: bytes, seed: str) -> tuple[bytes, str]:
    """A mutated copy of ``data`` and the names of the mutations applied, from ``seed`` alone."""
    rng = random.Random(seed)
    fields, regions = structure(data)
    out = bytearray(data)
    applied = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not out:
            break
        name = rng.choice(MUTATORS)
        applied.append(name)
        if name == "oversized":
            out = oversized_length(rng, out, regions, fields)
        else:
            step = {
                "bit_flips": bit_flips,
                "random_bytes": random_bytes,
                "truncate": truncate,
                "duplicate_chunk": duplicate_chunk,
                "zero_chunk": zero_chunk,
            }[name]
            out = step(rng, out, regions)
        if name in ("truncate", "duplicate_chunk"):  # offsets moved: walk the result again
            fields, regions = structure(bytes(out))
    return bytes(out), "+".join(applied)
