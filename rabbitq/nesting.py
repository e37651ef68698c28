"""How deep a body nests lists and maps, read from its bytes before it is decoded (issue 21).

The worker refuses a body nested deeper than ``MAX_NESTING`` without building it: a task's
arguments never need a hundred levels, while a crafted body of thousands costs recursion in
the decoder and in everything that walks the arguments afterwards (reprs, re-encoding for
retries and results).

Both scans stop as soon as the depth passes the limit, and each starts with a bound that is
one C-speed pass over the bytes: most bodies have fewer than ``limit`` bytes that could open
a container at all, and are never walked.
"""

from __future__ import annotations

import re

MAX_NESTING = 100

# Bytes that open a msgpack container: fixmap, fixarray, array16/32, map16/32.
_MSGPACK_CONTAINER_BYTES = bytes([*range(0x80, 0xA0), *range(0xDC, 0xE0)])
_NOT_MSGPACK_CONTAINER = bytes(b for b in range(256) if b not in _MSGPACK_CONTAINER_BYTES)

# Objects of a fixed size, by first byte: nil, bools, floats, ints, fixext.
_FIXED_SIZE = {
    0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9,
    0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9,
    0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18,
}  # fmt: skip
# Objects with a length after the first byte: (bytes of the length, bytes before the data).
_SIZED = {
    0xC4: (1, 2), 0xC5: (2, 3), 0xC6: (4, 5),  # bin
    0xC7: (1, 3), 0xC8: (2, 4), 0xC9: (4, 6),  # ext: the length, then a type byte
    0xD9: (1, 2), 0xDA: (2, 3), 0xDB: (4, 5),  # str
}  # fmt: skip
# Containers with a count after the first byte: (bytes of the count, entries per count).
_COUNTED = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}

_JSON_SIGNIFICANT = re.compile(rb'[\[\]{}"\\]')


def msgpack_depth(body: bytes, limit: int = MAX_NESTING) -> int:
    """The deepest nesting of the first msgpack object in ``body``; once past ``limit`` the
    scan stops and returns that depth. Malformed bytes end the scan: the decoder says why."""
    if len(body.translate(None, _NOT_MSGPACK_CONTAINER)) <= limit:
        return 0  # fewer container headers than the limit could possibly nest
    remaining = [1]  # objects still to read at each open level
    deepest = 0
    position, end = 0, len(body)
    while remaining and position < end:
        remaining[-1] -= 1
        first = body[position]
        entries = 0
        if first < 0x80 or first >= 0xE0:
            position += 1  # fixint
        elif first < 0x90:
            entries, position = 2 * (first & 0x0F), position + 1  # fixmap
        elif first < 0xA0:
            entries, position = first & 0x0F, position + 1  # fixarray
        elif first < 0xC0:
            position += 1 + (first & 0x1F)  # fixstr
        elif first in _FIXED_SIZE:
            position += _FIXED_SIZE[first]
        elif first in _SIZED:
            width, header = _SIZED[first]
            length = int.from_bytes(body[position + 1 : position + 1 + width], "big")
            position += header + length
        elif first in _COUNTED:
            width, per_count = _COUNTED[first]
            count = int.from_bytes(body[position + 1 : position + 1 + width], "big")
            entries, position = per_count * count, position + 1 + width
        else:
            break  # 0xC1, never used by msgpack
        if 0x80 <= first < 0xA0 or first in _COUNTED:
            deepest = max(deepest, len(remaining))
            if deepest > limit:
                return deepest
            if entries:
                remaining.append(entries)
        while remaining and remaining[-1] == 0:
            remaining.pop()
    return deepest


def json_depth(body: bytes, limit: int = MAX_NESTING) -> int:
    """The deepest nesting of brackets in a JSON ``body``, outside strings; once past
    ``limit`` the scan stops and returns that depth."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    in_string = False
    escaped_at = -2  # the position a backslash inside a string makes literal
    for match in _JSON_SIGNIFICANT.finditer(body):
        at = match.start()
        if at == escaped_at:
            continue
        char = body[at]
        if in_string:
            if char == 0x5C:  # backslash
                escaped_at = at + 1
            elif char == 0x22:  # quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in b"]}":
            depth -= 1
    return deepest
