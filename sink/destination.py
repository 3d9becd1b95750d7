"""Destination: put finished objects into the lake and list what is already there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow.fs as pafs

from clickstream.settings import Settings
from clickstream.storage import lake_filesystem


class DestinationUnavailable(Exception):
    """The lake's storage refused or could not be reached; the write may be retried."""

    retriable = True


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the lake root
    size: int
    modified: datetime | None


class LakeDestination:
    def __init__(self, filesystem: pafs.FileSystem, base: str):
        self._fs = filesystem
        self._base = base.rstrip("/")
        self._local = isinstance(filesystem, pafs.LocalFileSystem)

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeDestination:
        return cls(*lake_filesystem(settings))

    def ensure_ready(self) -> None:
        """Create the bucket or directory if missing."""
        try:
            self._fs.create_dir(self._base, recursive=True)
        except OSError as exc:
            raise DestinationUnavailable(f"cannot prepare {self._base}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        path = f"{self._base}/{key}"
        try:
            if self._local:
                # A reader must never see half a file: write aside, then rename into place.
                self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                tmp = f"{path}.tmp"
                with self._fs.open_output_stream(tmp) as out:
                    out.write(data)
                self._fs.move(tmp, path)
            else:
                # An S3 PUT is atomic: the object appears whole or not at all.
                with self._fs.open_output_stream(path) as out:
                    out.write(data)
        except OSError as exc:
            raise DestinationUnavailable(f"cannot write {path}: {exc}") from exc

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Objects (keys relative to the lake root) under ``prefix``; empty if none."""
        selector = pafs.FileSelector(f"{self._base}/{prefix}", allow_not_found=True, recursive=True)
        try:
            infos = self._fs.get_file_info(selector)
        except OSError as exc:
            raise DestinationUnavailable(f"cannot list {prefix}: {exc}") from exc
        start = len(self._base) + 1
        return [ObjectInfo(i.path[start:], i.size, i.mtime) for i in infos if i.type == pafs.FileType.File]

    def list_keys(self, prefix: str) -> list[str]:
        return [o.key for o in self.list_objects(prefix)]

    def get(self, key: str) -> bytes:
        try:
            with self._fs.open_input_file(f"{self._base}/{key}") as f:
                return f.read()
        except OSError as exc:
            raise DestinationUnavailable(f"cannot read {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._fs.delete_file(f"{self._base}/{key}")
        except FileNotFoundError:
            pass  # already gone: deleting is idempotent
        except OSError as exc:
            raise DestinationUnavailable(f"cannot delete {key}: {exc}") from exc
