"""Safe loading of MATLAB `.mat` annotation files.

scipy's compiled MAT v5 reader trusts the type codes and counts it finds and crashes the whole
process (a segmentation fault, no exception) on some damaged files: a data element whose type code
is not a numeric type, or a complex flag on a matrix without an imaginary part. `load_mat` first
walks the file in Python the way scipy will read it, checking every element, and only then lets
scipy read it.
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import scipy.io

from saliency.infra.errors import DatasetError

HEADER_BYTES = 128
MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED, MI_UTF8 = 1, 5, 6, 14, 15, 16
DATA_TYPES = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 16, 17, 18}  # miINT8 … miUTF32; 8, 10 and 11 are reserved
CELL, STRUCT, OBJECT, CHAR, SPARSE = 1, 2, 3, 4, 5
NUMERIC = set(range(6, 16))  # mxDOUBLE_CLASS … mxUINT64_CLASS
MAX_DIMS = 32  # scipy's limit
MAX_DEPTH = 64  # cells of structs of cells …: annotation files nest a few levels
MAX_INFLATED = 256 << 20  # bytes one compressed variable may expand to


def load_mat(path: Path) -> dict[str, np.ndarray]:
    """`scipy.io.loadmat(path)`, with a one-line DatasetError naming `path` for any damaged file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror or err})") from err
    problem = mat_v5_problem(data)
    if problem:
        raise DatasetError(f"{path}: damaged .mat file ({problem})")
    try:
        return scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, OSError, zlib.error... on bad files
        raise DatasetError(f"{path}: cannot read .mat file ({type(err).__name__}: {err})") from err


def mat_v5_problem(data: bytes) -> str | None:
    """What would make scipy's reader crash on these MAT v5 bytes, or None (also for other versions,
    which scipy reads in Python)."""
    if len(data) < HEADER_BYTES or data[126:128] not in (b"IM", b"MI"):
        return None
    order = "<" if data[126:128] == b"IM" else ">"
    try:
        _check_variables(data, HEADER_BYTES, order)
    except ValueError as err:
        return str(err)
    return None


def _check_variables(data: bytes, position: int, order: str) -> None:
    """The file's top level: matrices, each maybe zlib-compressed, one after another."""
    while position < len(data):
        mdtype, nbytes = _words(data, position, len(data), order)
        start, end = position + 8, position + 8 + nbytes
        if end > len(data):
            raise ValueError(f"variable at byte {position} runs past the end of the file")
        if mdtype == MI_COMPRESSED:
            inflater = zlib.decompressobj()
            try:
                inflated = inflater.decompress(data[start:end], MAX_INFLATED)
            except zlib.error as err:
                raise ValueError(f"compressed variable at byte {position}: {err}") from None
            if inflater.unconsumed_tail:
                raise ValueError(f"compressed variable at byte {position} inflates past {MAX_INFLATED >> 20} MiB")
            _check_matrix(inflated, 0, len(inflated), order, depth=0)
        else:
            _check_matrix(data, position, end, order, depth=0)
        position = end


def _check_matrix(data: bytes, position: int, limit: int, order: str, depth: int) -> int:
    """Check the matrix at `position` and everything inside it, reading as scipy does (in order, with no
    regard for the matrix's declared size, never past `limit`); returns where scipy's reading stops."""
    mdtype, nbytes = _words(data, position, limit, order)
    if mdtype != MI_MATRIX:
        raise ValueError(f"expected a matrix at byte {position}, found data type {mdtype}")
    if nbytes == 0:  # an empty matrix
        return position + 8
    if depth > MAX_DEPTH:
        raise ValueError(f"matrices nested more than {MAX_DEPTH} deep")
    flags_type, flags_at, flags_bytes, cursor = _element(data, position + 8, limit, order)
    if flags_type != MI_UINT32 or flags_bytes != 8:
        raise ValueError(f"matrix at byte {position} has no array flags")
    (flags,) = struct.unpack_from(order + "I", data, flags_at)
    mclass, is_complex = flags & 0xFF, bool(flags >> 11 & 1)
    if mclass not in NUMERIC | {CELL, STRUCT, OBJECT, CHAR, SPARSE}:
        raise ValueError(f"matrix at byte {position} has class {mclass}, which annotation files do not use")
    dims_type, dims_at, dims_bytes, cursor = _element(data, cursor, limit, order)
    if dims_type not in (MI_INT32, MI_UINT32) or dims_bytes % 4 or not 0 < dims_bytes // 4 <= MAX_DIMS:
        raise ValueError(f"matrix at byte {position} has malformed dimensions")
    dims = struct.unpack_from(f"{order}{dims_bytes // 4}i", data, dims_at)
    if min(dims) < 0:
        raise ValueError(f"matrix at byte {position} has a negative dimension")
    cursor, _ = _check_text(data, cursor, limit, order)  # the name
    if mclass in (CELL, STRUCT, OBJECT):
        children = math.prod(dims)
        if mclass != CELL:
            if mclass == OBJECT:
                cursor, _ = _check_text(data, cursor, limit, order)  # the class name
            cursor, fields = _check_field_names(data, cursor, limit, order)
            children *= fields
        for _ in range(children):  # a count the data cannot back fails at the first missing child
            cursor = _check_matrix(data, cursor, limit, order, depth + 1)
        return cursor
    parts = {CHAR: 1, SPARSE: 3}.get(mclass, 1) + (is_complex and mclass != CHAR)
    for _ in range(parts):  # real part, imaginary part; a sparse matrix's row and column indices first
        part_type, _, _, cursor = _element(data, cursor, limit, order)
        if part_type not in DATA_TYPES:
            raise ValueError(f"matrix at byte {position} holds data of unknown type {part_type}")
    return cursor


def _check_field_names(data: bytes, cursor: int, limit: int, order: str) -> tuple[int, int]:
    """A struct's field-name length and names → (next position, number of fields)."""
    length_type, length_at, length_bytes, after = _element(data, cursor, limit, order)
    if length_type not in (MI_INT32, MI_UINT32) or length_bytes != 4:
        raise ValueError(f"struct field-name length at byte {cursor} is malformed")
    (name_length,) = struct.unpack_from(order + "i", data, length_at)
    if name_length <= 0:
        raise ValueError(f"struct field names at byte {cursor} have length {name_length}")
    after, names_bytes = _check_text(data, after, limit, order)
    return after, names_bytes // name_length


def _check_text(data: bytes, cursor: int, limit: int, order: str) -> tuple[int, int]:
    """An int8 (or UTF-8) string element, as names are stored → (next position, its bytes)."""
    mdtype, _, nbytes, after = _element(data, cursor, limit, order)
    if mdtype not in (MI_INT8, MI_UTF8):
        raise ValueError(f"expected a name at byte {cursor}, found data type {mdtype}")
    return after, nbytes


def _element(data: bytes, position: int, limit: int, order: str) -> tuple[int, int, int, int]:
    """(type, data offset, data bytes, next position) of the element at `position`, checked to end by `limit`."""
    if position + 8 > limit:
        raise ValueError(f"element at byte {position} is cut off")
    (word,) = struct.unpack_from(order + "I", data, position)
    if word >> 16:  # small data element: type and size share one word, up to 4 bytes of data the next
        if word >> 16 > 4:
            raise ValueError(f"small element at byte {position} claims {word >> 16} bytes")
        return word & 0xFFFF, position + 4, word >> 16, position + 8
    (nbytes,) = struct.unpack_from(order + "I", data, position + 4)
    if position + 8 + nbytes > limit:
        raise ValueError(f"element at byte {position} runs past the end of its variable")
    return word, position + 8, nbytes, position + 8 + nbytes + -nbytes % 8  # padded to 8 bytes


def _words(data: bytes, position: int, limit: int, order: str) -> tuple[int, int]:
    """The two 32-bit words of a full tag: (type, byte count)."""
    if position + 8 > limit:
        raise ValueError(f"tag at byte {position} is cut off")
    return struct.unpack_from(order + "II", data, position)
