"""Size checks of a ``torch.save`` archive before ``torch.load(weights_only=True)`` reads it.

``weights_only`` stops code, not memory: its allow-list may call ``bytearray(N)``, ``torch.FloatStorage(N)`` or
legacy tensor constructors with a size taken from the pickle, and a zip entry may be a deflate bomb. This
module reads the zip directory and walks the pickle's opcodes (``pickletools``, nothing is executed) to bound
the bytes a load would allocate, and refuses files that claim more than they hold.
"""

from __future__ import annotations

import math
import pickletools
import zipfile
from pathlib import Path
from typing import Any

from guidegap.errors import InputError
from guidegap.files import human_bytes

__all__ = ["check_torch_archive", "pickle_allocation", "MAX_UNBACKED_BYTES"]

# Bytes a load may allocate beyond the archive's own (uncompressed) size: small Python objects, dtype casts.
MAX_UNBACKED_BYTES = 64 << 20
_ITEMSIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1, "Byte": 1,
             "Bool": 1, "Untyped": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QInt32": 4, "QInt8": 1, "QUInt8": 1}
_COPYING = {"torch._utils._rebuild_device_tensor_from_cpu_tensor"}  # copies (and may widen) its tensor


def _allocator_itemsize(name: str) -> int | None:
    """Bytes per element of a callable that allocates from integer sizes (None: does not)."""
    if name == "builtins.bytearray":
        return 1
    module, _, attr = name.rpartition(".")
    if module in ("torch", "torch.cuda", "torch.sparse", "torch.storage") and attr.endswith(("Storage", "Tensor")):
        return _ITEMSIZE.get(attr.removesuffix("Storage").removesuffix("Tensor"), 8)
    return None


class _Item:
    """What the opcode walk knows about one stack entry."""

    __slots__ = ("kind", "value", "nbytes")

    def __init__(self, kind: str, value: Any = None, nbytes: int = 0) -> None:
        self.kind, self.value, self.nbytes = kind, value, nbytes


def _call(func: _Item, args: _Item) -> tuple[_Item, int]:
    """The result of calling ``func(*args)`` and the bytes the call allocates."""
    items = args.value if args.kind == "tuple" else []
    name = func.value if func.kind == "global" else ""
    itemsize = _allocator_itemsize(name)
    ints = [i.value for i in items if i.kind == "int"]
    if itemsize is not None and ints and len(ints) == len(items):
        nbytes = math.prod(max(0, v) for v in ints) * itemsize
        return _Item("tensor", nbytes=nbytes), nbytes
    if itemsize is not None and items and items[0].kind == "bytes":
        return _Item("bytes", nbytes=items[0].nbytes), items[0].nbytes
    if name in _COPYING and items:
        nbytes = 16 * items[0].nbytes  # up to a widening cast (bool -> complex128)
        return _Item("tensor", nbytes=nbytes), nbytes
    if name.startswith("torch._utils._rebuild") and items:  # a view of its storage
        return _Item("tensor", nbytes=items[0].nbytes), 0
    return _Item("other"), 0


def _storage(pid: _Item) -> _Item:
    """A persistent id ``('storage', StorageType, key, location, numel)``: a record of the archive."""
    items = pid.value if pid.kind == "tuple" else []
    if len(items) >= 5 and items[1].kind == "global" and items[4].kind == "int":
        itemsize = _allocator_itemsize(items[1].value) or 1
        return _Item("tensor", value=(items[2].kind, items[2].value), nbytes=max(0, items[4].value) * itemsize)
    return _Item("other", value=id(pid))


def pickle_allocation(data: bytes) -> int:
    """Upper estimate of the bytes unpickling ``data`` with torch's ``weights_only`` loader allocates."""
    stack: list[Any] = []
    memo: dict[Any, _Item] = {}
    storages: set[Any] = set()
    total = 0
    mark = object()
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name == "MARK":
            stack.append(mark)
        elif name in ("GLOBAL", "INST"):
            stack.append(_Item("global", str(arg).replace(" ", ".")))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            stack.append(_Item("global", f"{getattr(module, 'value', '')}.{getattr(attr, 'value', '')}"))
        elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"):
            stack.append(_Item("int", int(arg)))
        elif name in ("UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"):
            stack.append(_Item("str", arg))
        elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"):
            stack.append(_Item("bytes", nbytes=len(arg)))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items, stack[-n:] = stack[-n:], []
            stack.append(_Item("tuple", items))
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
            at = len(stack) - 1 - stack[::-1].index(mark)
            items, stack[at:] = stack[at + 1:], []
            stack.append(_Item("tuple" if name == "TUPLE" else "other", items))
        elif name in ("REDUCE", "NEWOBJ"):
            args, func = stack.pop(), stack.pop()
            result, nbytes = _call(func, args)
            total += nbytes
            stack.append(result)
        elif name in ("BINPERSID", "PERSID"):
            storage = _storage(stack.pop()) if name == "BINPERSID" else _Item("other")
            if storage.value not in storages:  # each record is read once, whatever its numel claims
                storages.add(storage.value)
                total += storage.nbytes
            stack.append(storage)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg, _Item("other")))
        else:
            _generic(opcode, stack, mark)
    return total


def _generic(opcode: pickletools.OpcodeInfo, stack: list[Any], mark: object) -> None:
    """Apply an opcode's documented stack effect with placeholders (containers, constants, BUILD, ...)."""
    before = opcode.stack_before
    if pickletools.markobject in before:
        at = len(stack) - 1 - stack[::-1].index(mark)
        del stack[at:]
        before = before[: before.index(pickletools.markobject)]
    if before:
        del stack[len(stack) - len(before):]
    stack.extend(_Item("other") for _ in opcode.stack_after)


def check_torch_archive(path: Path, limit: int = MAX_UNBACKED_BYTES) -> None:
    """Refuse a ``torch.save`` file whose load would allocate far more than the file holds."""
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a readable PyTorch checkpoint (not a torch.save zip archive: damaged, the pre-1.6 "
                         "format, or another kind of file); re-save it with a current torch.save or as safetensors.")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            unpacked = sum(e.file_size for e in entries)
            if unpacked > size + limit:
                raise InputError(f"{path}: the archive unpacks to {human_bytes(unpacked)} from {human_bytes(size)} "
                                 "(compressed entries: a zip bomb, or not written by torch.save); refusing to load it.")
            pickles = [e for e in entries if e.filename.endswith(".pkl")]
            allocated = sum(pickle_allocation(archive.read(e)) for e in pickles)
    except InputError:
        raise
    except Exception as error:  # a damaged directory or pickle: torch.load would fail too
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}); re-save or re-download it.") from None
    if allocated > unpacked + limit:
        raise InputError(f"{path}: its pickle asks for {human_bytes(allocated)} of buffers in a {human_bytes(size)} file; "
                         "refusing to load it (a memory bomb, or not a checkpoint).")
