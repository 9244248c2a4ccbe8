"""Per-file spec state for the watcher: which files are valid, and their last good specs.

Called by the watch loop. `SpecSet.read()` re-reads every file under the watched paths
(directory state after the debounce, never the event that woke us) and parses each one
on its own with `load_text`, caching by content so an unchanged file costs a string
compare. `settle()` is pure: it decides, file by file, which specs stand. A file that
does not parse, clashes with another file, or fails the host check is *broken*: its last
good specs (if any) stand in for it and the objects it owned are protected from pruning,
until it is valid again. Everything else goes on. With several hosts, routing.py settles
the files once for all hosts and each host's watcher settles its own share with `settle`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Source, SpecError, SpecErrors
from ..model import Desired, DomainSpec, HostAlias, NetworkSpec, PoolSpec, Spec, VolumeSpec
from ..reconciler.load.loadstorage import check_storage, with_volume_formats
from ..reconciler.load.load import expand, load_text
from ..reconciler.load.loadset import LoadedSet
from ..reconciler.load.validate import check_specs

Specs = tuple[Spec, ...]
Aliases = tuple[HostAlias, ...]
Sets = tuple[LoadedSet, ...]
HostCheck = Callable[[Desired], list[SpecError]]


@dataclass(frozen=True, slots=True)
class Scan:
    """One reading of the spec paths: each file's specs or its errors."""

    parsed: Mapping[str, Specs] = field(default_factory=dict)
    errors: Mapping[str, tuple[SpecError, ...]] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()  # given paths that could not be listed this time
    hosts: Mapping[str, Aliases] = field(default_factory=dict)  # 'kind: Hosts' entries
    # Each file's DomainSets, their instances in `parsed` placed as on empty hosts until
    # the Catalog places them with their hosts' facts (placing.py), as apply does.
    sets: Mapping[str, Sets] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settled:
    """The specs that stand this round, and the files that are broken."""

    chosen: Mapping[str, Specs]
    broken: Mapping[str, tuple[SpecError, ...]]

    @property
    def desired(self) -> Desired:
        return desired_of(self.chosen)


def desired_of(chosen: Mapping[str, Specs]) -> Desired:
    specs = [s for name in sorted(chosen) for s in chosen[name]]
    volumes = {s.key.name: s for s in specs if isinstance(s, VolumeSpec)}
    # As load_specs does across files: volume disks get their volume's format.
    domains = with_volume_formats([s for s in specs if isinstance(s, DomainSpec)], volumes)
    return Desired(
        domains={s.name: s for s in domains},
        networks={s.name: s for s in specs if isinstance(s, NetworkSpec)},
        pools={s.name: s for s in specs if isinstance(s, PoolSpec)},
        volumes=volumes,
    )


def _flatten(errors: Iterable[SpecError]) -> Iterable[SpecError]:
    for error in errors:
        if isinstance(error, SpecErrors):
            yield from error.errors
        else:
            yield error


def _blame(errors: Iterable[SpecError], known: Iterable[str]) -> dict[str, list[SpecError]]:
    known = set(known)
    out: dict[str, list[SpecError]] = {}
    for error in _flatten(errors):
        file = error.source.file if error.source is not None else None
        if file in known:
            out.setdefault(file, []).append(error)
    return out


def settle(scan: Scan, last_good: Mapping[str, Specs], *, host_check: HostCheck) -> Settled:
    """Choose each file's specs: its current ones if valid, else its last good ones.

    Files unchanged since they were last good are checked first, so in a clash between
    an old file and a newly edited one, the edit is the one blamed. Blaming a file
    replaces its specs by its last good ones (or none); repeat until nothing clashes.
    """
    broken: dict[str, list[SpecError]] = {f: list(e) for f, e in scan.errors.items()}
    chosen: dict[str, Specs] = dict(scan.parsed)
    stale = set(scan.errors) | {
        f for f in last_good
        if f not in scan.parsed and any(_under(f, p) for p in scan.unreadable)
    }
    for name in stale:
        chosen[name] = last_good.get(name, ())
    for _ in range(len(chosen) + 1):
        order = sorted(chosen, key=lambda f: (chosen[f] != last_good.get(f), f))
        specs = [s for f in order for s in chosen[f]]
        blamed = _blame([*check_specs([s for s in specs if isinstance(
            s, DomainSpec | NetworkSpec)]), *check_storage(specs)], chosen)
        if not blamed:
            blamed = _blame(host_check(desired_of(chosen)), chosen)
        if not blamed:
            break
        for name, errors in blamed.items():
            broken.setdefault(name, []).extend(errors)
            fallback = last_good.get(name, ())
            chosen[name] = fallback if chosen[name] != fallback else ()
    return Settled(chosen, {f: tuple(e) for f, e in broken.items()})


def _under(file: str, given: str) -> bool:
    return Path(file) == Path(given) or Path(file).is_relative_to(Path(given))


class SpecSet:
    """The watched paths, with the last good specs of every file."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        self.last_good: dict[str, Specs] = {}
        self._cache: dict[str, tuple[str, tuple[Specs, Aliases, Sets] | SpecError]] = {}
        self.reads = 0  # readings, and files parsed (not found in the cache): for tests
        self.parses = 0
        self.changed = True  # did the last reading find anything new? (fleet.Catalog)
        self._outline: object = None
        self._parses_seen = -1

    def read(self) -> Scan:
        scan = self._read()
        # Which files, which are broken and why, which paths are unreadable: with no file
        # reparsed, an unchanged outline means an unchanged reading.
        outline = (tuple(scan.parsed), tuple((f, tuple(map(str, e)))
                                             for f, e in scan.errors.items()), scan.unreadable)
        parses = self.parses
        self.changed = parses != self._parses_seen or outline != self._outline
        self._outline, self._parses_seen = outline, parses
        return scan

    def _read(self) -> Scan:
        self.reads += 1
        parsed: dict[str, Specs] = {}
        hosts: dict[str, Aliases] = {}
        sets: dict[str, Sets] = {}
        errors: dict[str, tuple[SpecError, ...]] = {}
        unreadable: list[str] = []
        for given in self.paths:
            # A file that cannot be read (a FIFO, a device...) is broken on its own:
            # the other files still count, so the watcher goes on reconciling.
            refused: list[SpecError] = []
            try:
                files = list(expand([given], errors=refused))
            except SpecError as exc:  # gone, or a file vanished mid-walk (save-by-rename)
                unreadable.append(given)
                errors[given] = (exc,)
                continue
            for problem in refused:
                name = problem.source.file if problem.source is not None else given
                errors[name] = (*errors.get(name, ()), problem)
            for spec_file in files:
                result = self._parse(spec_file.name, spec_file.text)
                if isinstance(result, SpecError):
                    errors[spec_file.name] = tuple(_flatten([result]))
                    continue
                parsed[spec_file.name] = result[0]
                if result[1]:
                    hosts[spec_file.name] = result[1]
                if result[2]:
                    sets[spec_file.name] = result[2]
        self._cache = {k: v for k, v in self._cache.items() if k in parsed or k in errors}
        return Scan(parsed, errors, tuple(unreadable), hosts, sets)

    def _parse(self, name: str, text: str) -> tuple[Specs, Aliases, Sets] | SpecError:
        cached = self._cache.get(name)
        if cached is not None and cached[0] == text:
            return cached[1]
        result: tuple[Specs, Aliases, Sets] | SpecError
        self.parses += 1
        named: list[HostAlias] = []
        in_file: list[LoadedSet] = []
        try:
            # A set's DHCP host entries are written once every file is read (the
            # Catalog's Placer, after placing): here its instances only.
            loaded = load_text(text, source=name, hosts=named, sets=in_file)
            result = (tuple(s for s in loaded if isinstance(
                s, DomainSpec | NetworkSpec | PoolSpec | VolumeSpec)), tuple(named),
                tuple(in_file))
        except SpecError as exc:
            result = exc
        except Exception as exc:  # noqa: BLE001 (a converter bug must not stop the rest)
            result = SpecError(f"cannot load: {type(exc).__name__}: {exc}", source=Source(name))
        self._cache[name] = (text, result)
        return result

    def commit(self, settled: Settled) -> None:
        self.last_good = remember(self.last_good, settled)


def remember(last_good: Mapping[str, Specs], settled: Settled) -> dict[str, Specs]:
    """The specs of every valid file become its last good ones; files that are gone
    (neither read nor broken) are forgotten."""
    keep = set(settled.chosen) | set(settled.broken)
    out = {f: s for f, s in last_good.items() if f in keep}
    for name, specs in settled.chosen.items():
        if name not in settled.broken:
            out[name] = specs
    return out
