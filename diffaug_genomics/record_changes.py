"""What reading sequences changed, said once: records cropped or padded to the run's length by
a stated policy, U read as T, lower-case (soft-masked) bases read as bases, empty records
skipped. :class:`RecordChanges` counts them while chunks are read and :meth:`line` is the one
summary line a command prints on stderr (None when nothing changed).

It also says where each row comes from: :func:`row_region` is the part of its record a row
covers, ``id:start-end`` (0-based, half-open, as window ids and BED), which ``generate``
writes into every positive's header (``source=SIRV7:74418-74538``) and ``embed`` stores
beside the embeddings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from diffaug_genomics.io.fasta import ReadStats
from diffaug_genomics.io.onehot import EncodedChunk

POLICY_WORDS = {
    "center": ("cropped to their middle {L} bp", "padded on both sides"),
    "pad": ("cropped to their first {L} bp", "padded on the right"),
    "crop": ("cropped to their first {L} bp", "padded on the right"),
    "window": ("tiled into {L} bp windows", "padded on the right"),
}
_WINDOW_ID = re.compile(r":\d+-\d+$")


@dataclass
class RecordChanges:
    """Counts of what reading ``source`` into rows of ``length`` bp with ``policy`` changed."""

    source: str
    length: int
    policy: str
    records: int = 0
    rows: int = 0
    cropped: int = 0
    padded: int = 0
    windows: int = 0
    n_bases: int = 0
    n_ambiguous: int = 0
    stats: ReadStats = field(default_factory=ReadStats)
    """The FASTA reader's counters (U, lower case, empty records): pass it to ``read_fasta``."""

    def add(self, chunk: EncodedChunk) -> None:
        """Count one encoded chunk (:func:`~diffaug_genomics.io.onehot.encode_records`)."""
        self.records += chunk.records
        self.rows += len(chunk.ids)
        self.cropped += chunk.cropped
        self.padded += chunk.padded
        self.windows += chunk.windows
        self.n_bases += chunk.n_bases
        self.n_ambiguous += chunk.n_ambiguous

    def parts(self) -> list[str]:
        """The changes as phrases (empty: nothing changed)."""
        out = []
        longer, shorter = POLICY_WORDS.get(self.policy, ("cropped", "padded"))
        if self.policy == "window" and self.rows > self.records:
            out.append(f"{self.records} records tiled into {self.rows} rows of {self.length} bp")
        elif self.cropped:
            out.append(f"{self.cropped} of {self.records} records longer than {self.length} bp "
                       f"{longer.format(L=self.length)}")
        if self.padded:
            out.append(f"{self.padded} shorter records {shorter} (padding is not sequence: "
                       "outputs keep each record's own bases)")
        out += read_parts(self.stats)
        return out

    def line(self) -> str | None:
        """``SOURCE: ... (policy P); output records name the coordinates they cover`` or None."""
        parts = self.parts()
        if not parts:
            return None
        coords = ("; each output names the part of its record it covers, ID:START-END "
                  "(0-based, half-open)" if self.cropped or self.rows > self.records else "")
        return (f"{self.source}: read into rows of {self.length} bp with the run's "
                f"'{self.policy}' policy: {'; '.join(parts)}{coords}")


def read_parts(stats: ReadStats) -> list[str]:
    """What the FASTA reader changed (U, lower case, empty records), as phrases."""
    out = []
    if stats.rna_records:
        out.append(f"U read as T in {_n(stats.rna_records, 'record')} (RNA: outputs are DNA "
                   "letters)")
    if stats.soft_masked_records:
        out.append(f"lower-case (soft-masked) bases read as bases in "
                   f"{_n(stats.soft_masked_records, 'record')} (outputs are upper case)")
    if stats.empty_records:
        shown = ", ".join(f"'{r}'" for r in stats.empty_records[:3])
        more = f" and {len(stats.empty_records) - 3} more" if len(stats.empty_records) > 3 else ""
        out.append(f"{len(stats.empty_records)} empty record"
                   f"{'s' if len(stats.empty_records) > 1 else ''} skipped ({shown}{more})")
    return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def row_region(row_id: str, record_id: str | None, start: int | None, own: int,
               policy: str) -> str | None:
    """The part of its record a row covers, ``record:start-end`` (0-based, half-open), or
    None when it cannot be known (a ``center`` row of full length in a file without
    ``/starts``)."""
    if start is not None and start >= 0:
        return f"{record_id or row_id}:{start}-{start + own}"
    if policy == "window" and _WINDOW_ID.search(row_id):
        return row_id
    return None


def report_changes(inp: object) -> str | None:
    """Log the one summary line of what reading an input changed (a :class:`RecordChanges`
    in ``inp.info["changes"]``, as the DNA reader leaves it) as a warning; returns it."""
    from diffaug_genomics.progress import LOG

    changes = getattr(inp, "info", {}).get("changes")
    line = changes.line() if isinstance(changes, RecordChanges) else None
    if line:
        LOG.warning("%s", line)
    return line
