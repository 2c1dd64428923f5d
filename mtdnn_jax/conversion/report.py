"""What a conversion did, for the user to read: what it took and what it skipped, and why."""
from __future__ import annotations

import dataclasses
from collections import defaultdict


@dataclasses.dataclass
class ConversionReport:
  source: str
  output: str
  num_params: int = 0
  num_values: int = 0
  skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> reason
  notes: list[str] = dataclasses.field(default_factory=list)

  def skipped_by_reason(self) -> dict[str, list[str]]:
    groups = defaultdict(list)
    for name, reason in sorted(self.skipped.items()):
      groups[reason].append(name)
    return dict(groups)

  def summary(self) -> str:
    lines = [f"converted {self.source} -> {self.output}: {self.num_params} parameter arrays, "
             f"{self.num_values:,} values"]
    for reason, names in self.skipped_by_reason().items():
      examples = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
      lines.append(f"  skipped {len(names)} {reason}: {examples}")
    lines += [f"  note: {note}" for note in self.notes]
    return "\n".join(lines)

  def provenance(self, fmt: str) -> dict:
    return {"source": self.source, "source_format": fmt,
            "skipped": self.skipped_by_reason(), "notes": self.notes}
