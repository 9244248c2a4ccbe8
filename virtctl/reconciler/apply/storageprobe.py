"""What the host's files say about declared storage, read before the first action.

`storage()` lists only running pools' volumes. A declared pool that is not running
(undefined, or stopped) lists the files in its directory once it starts, and a
backing store may be any file of the host: both are asked of the reader here
(`Reader.pool_files`, `Reader.file_exists`) and added to the StorageView that checks
and plans read (plan_storage.py; docs/storage.md, "Data safety"). Used by `api` and
the watcher alike.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ...model import Desired
from ..plan.plan_storage import StorageView, backing_paths, dormant_pools, view

if TYPE_CHECKING:
    from ...drivers.base import Reader


def probed(desired: Desired, reader: Reader, found: StorageView) -> StorageView:
    """`found` with the files in the directory of each declared pool not running yet
    (and their records), and whether the backing files the specs name exist."""
    dormant = {}
    for name, xml in dormant_pools(desired, found).items():
        files = reader.pool_files(xml)
        if files is not None:
            dormant[name] = view(files)
    backing = {path: reader.file_exists(path) for path in sorted(backing_paths(desired, found))}
    return replace(found, dormant=dormant, backing_files=backing)
